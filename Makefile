# `make tracks` and `make test` set up whatever is missing (system packages, .venv), then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: tracks test test-fast bench sysdeps clean

# compileall: calmplace's bytecode, written once (where PYTHONDONTWRITEBYTECODE is set, as on our
# development machines, every run would otherwise compile the package again: ~0.2 s per process)
tracks: sysdeps $(STAMP)
	@$(PY) -m compileall -q src >/dev/null
	$(VENV)/bin/calmplace build

test: sysdeps $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: sysdeps $(STAMP)
	@$(PY) -m compileall -q src >/dev/null
	$(PY) tools/bench.py

sysdeps:
	@bash tools/sysdeps.sh

$(STAMP): pyproject.toml setup.py src/calmplace/_sos.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

clean:
	rm -rf build
