# The README's commands. The venv is made on first use from the project's own files.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: test test-long demo bench lint clean compose-test

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# the suite less the long tests, two test processes side by side (a module stays in one)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not long" --durations=10

# the long tests (real processes for a minute or more; the tc test bed needs root), one at a time
test-long: $(STAMP)
	$(BIN)/python -m pytest -q -m long

demo: $(STAMP)
	$(BIN)/dads up --story

bench: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)

# docker compose for real: private dockerd, images built here, cloud + edge projects (root, ~15 min)
compose-test: $(STAMP)
	$(BIN)/python deploy/compose_test.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check common services cli launch tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
