"""The `glan` command and what it drives: the papermill runner, preflight, sweeps, the run index, summaries and the
HTML report.

May import: `core`, `settings`, `llm`, `runs`, `stages`, `data`, `train`, `evaluation`, `views`.
"""
