"""Talking to a model: the client (cache, ledger, retries, limits, endpoints, refusals), structured output, context
windows, the prompt templates of the top-level `prompts/`, the embedded llama.cpp server, the Batch API and
sentence embeddings. Knows nothing of stages or runs.

May import: `core`, `settings`.
"""
