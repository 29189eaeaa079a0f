"""The run directory and running a stage in it: the store (append-only records, snapshot, manifest), bounded and
resumable stage execution, the run's client and the Ray backend.

May import: `core`, `settings`, `llm`.
"""
