# The two set-up commands: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv with Python >= 3.12 on first use and are fast the second time.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUTDIR ?= ebm_ppl_demo_output
PYTEST_ARGS ?=

.PHONY: demo test test-slow lint bench docs docs-serve docs-check docs-images clean venv

$(STAMP): pyproject.toml
	@PYBIN=$$(scripts/find-python.sh) || exit 1; \
	  [ -x $(PY) ] || $$PYBIN -m venv $(VENV) || { echo "error: could not create $(VENV) with $$PYBIN" >&2; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,docs]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ebm-ppl demo --outdir $(OUTDIR)

# Three pytest processes, not one: a single process that kept every test's compiled programs
# ran out of memory mappings (vm.max_map_count) after ~260 tests and XLA's compiler segfaulted.
# tests/conftest.py now frees compiled programs after each module; the chunks are a second
# guard and cost a few seconds of imports. Each chunk prints its own summary line.
TEST_CHUNKS ?= "tests/test_[a-g]*.py" "tests/test_[h-r]*.py" "tests/test_[s-z]*.py"
test: $(STAMP)
	@set -e; for chunk in $(TEST_CHUNKS); do \
	  echo "== pytest $$chunk"; $(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS) $$chunk; done

lint: $(STAMP)
	$(PY) -m ruff check ebm_ppl tests examples benchmarks
	$(PY) -m mypy

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/kernel_throughput.py

# The site is self-contained: MathJax comes from the docs extra (PyPI) and is copied into it
# by scripts/docs_hooks.py; no font or script is fetched at view time.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# View the built site at http://127.0.0.1:8000/ (search needs http; pages also open from file://).
DOCS_PORT ?= 8000
docs-serve: docs
	$(PY) -m http.server --bind 127.0.0.1 --directory site $(DOCS_PORT)

# Every page in headless Chromium with the network off: maths typeset, no console error, no
# request off the site, no dead internal link or anchor. Needs Debian's chromium and
# chromium-driver (apt-get install -y chromium chromium-driver). Not run by `make test`.
docs-check: docs
	$(PY) scripts/docs_check.py site

# Rerun every example in quick mode and refresh the tutorial figures in docs/img/ (minutes).
docs-images: $(STAMP)
	MPLBACKEND=Agg PYTHONPATH=$(CURDIR) $(PY) examples/_docs_images.py

clean:
	rm -rf $(VENV) site $(OUTDIR) .pytest_cache
