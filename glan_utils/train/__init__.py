"""Fine-tuning: which checkpoint a model name means, the GPU-hour plan and response-only SFT (paper §3).

May import: `core`, `settings`, `llm`, `runs`, `stages`, `data`, `evaluation`.
"""
