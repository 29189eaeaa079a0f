"""Evaluation of a tuned model: lm-eval benchmarks fed offline, HumanEval/MBPP in the sandbox, GLAN-Test with an
LLM judge, the loss-gap check, intervals and what could not be scored.

May import: `core`, `settings`, `llm`, `runs`, `stages`, `data`, `train`, `train`.
"""
