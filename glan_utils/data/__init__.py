"""Stage 6, the data set: dedup, decontamination, the quality filter, follow-up turns and export with its card and
run card, plus the offline benchmark data the decontamination and evaluation read.

May import: `core`, `settings`, `llm`, `runs`, `stages`.
"""
