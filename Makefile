# The README's commands. The venv is made on first use from the project's own files.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: test demo bench lint clean compose-test

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/dads up --story

bench: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)

# docker compose for real: private dockerd, images built here, cloud + edge projects (root, ~15 min)
compose-test: $(STAMP)
	$(BIN)/python deploy/compose_test.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check common services tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
