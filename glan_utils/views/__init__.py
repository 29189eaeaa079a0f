"""What the notebooks display: tables, plotly figures and the taxonomy review widget. No model calls, no writes
besides saved plots.

May import: `core`, `settings`, `llm`, `runs`, `stages`, `data`, `train`, `evaluation`.
"""
