# The two commands of the README. Both work on a fresh Debian machine with Python 3.11.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=

.PHONY: run test clean

$(PY):
	./scripts/bootstrap-python.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml clients/python/pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]' -e ./clients/python
	touch $@ $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gentbox init --if-needed
	$(VENV)/bin/gentbox run

test: $(TEST_STAMP)
	eval "$$(./scripts/test-services.sh)" && $(VENV)/bin/pytest -n 2 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
