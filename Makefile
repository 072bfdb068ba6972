# Two commands (README): `make quickstart` runs the whole pipeline at toy scale on this
# machine; `make test` runs the test suite. Each creates the CPU environment (.venv) first
# if it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: env quickstart test test-fast lint bench clean

env:
	@bash launch/setup_env.sh

quickstart: env
	@bash launch/quickstart.sh

test: env
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (rules in pyproject.toml): pyflakes, pycodestyle, isort, pyupgrade, bugbear.
lint: env
	$(PY) -m ruff check .

# Everything except the tests that start vLLM or torchrun (a few minutes less).
test-fast: env
	$(PY) -m pytest -m "not vllm and not distributed" $(PYTEST_ARGS)

clean:
	rm -rf outputs/quickstart .pytest_cache
