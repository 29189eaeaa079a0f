# Two commands for a new user: `make demo` (the main job on the embedded local model) and `make test`.
# Both create .venv and install what they need; llama.cpp is compiled once (~10 min) and cached in ~/.cache.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN ?= demo

.PHONY: setup demo test test-fast bench lint clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml scripts/install_python_deps.sh | $(BIN)/python
	bash scripts/install_python_deps.sh $(BIN)/python
	touch $(STAMP)

setup: $(STAMP)
	bash scripts/install_llama_server.sh $(BIN)/python
	bash scripts/install_sandbox.sh
	# notebooks/*.ipynb are stored without outputs (.gitattributes); a checkout that is not a git repository skips it
	-git config filter.glan-notebook.clean "$(abspath $(BIN))/python -m glan_utils.app.hygiene"

demo: setup
	$(BIN)/glan run $(RUN) --params configs/demo.yaml
	$(BIN)/glan report $(RUN)
	@echo "Report: outputs/$(RUN)/report.html"

test: setup lint
	bash scripts/install_browser.sh
	bash scripts/install_sandbox.sh
	$(BIN)/pytest -ra

test-fast: $(STAMP)
	$(BIN)/pytest -ra -m "not embedded and not browser and not slow"

bench: setup  ## make bench BENCH_ARGS=--full adds the 1M-task pipeline row and the 1M-record data steps
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check glan_utils tests benchmarks
	$(BIN)/ruff format --check glan_utils tests benchmarks

clean-demo:
	rm -rf outputs/$(RUN)
