# The two set-up commands: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv with Python >= 3.12 on first use and are fast the second time.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUTDIR ?= ebm_ppl_demo_output
PYTEST_ARGS ?=

.PHONY: demo test test-slow bench docs clean venv

$(STAMP): pyproject.toml
	@PYBIN=$$(scripts/find-python.sh) || exit 1; \
	  [ -x $(PY) ] || $$PYBIN -m venv $(VENV) || { echo "error: could not create $(VENV) with $$PYBIN" >&2; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,docs]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ebm-ppl demo --outdir $(OUTDIR)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/kernel_throughput.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) site $(OUTDIR) .pytest_cache
