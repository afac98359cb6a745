# The two set-up commands: `make run` (quick start on SQLite, no services needed) and
# `make test` (the whole suite on PostgreSQL and Redis, started here if they are down).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_ENV := DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium \
	REDIS_URL=redis://127.0.0.1:6379/0 SECRET_KEY=test-only-secret \
	ALLOWED_HOSTS=testserver,127.0.0.1,localhost

.PHONY: run test lint install bench FORCE

# Which Python a venv comes from. A venv made by another Python, or whose Python no longer
# runs (a failed creation, a removed interpreter), is made again from scratch.
PYTHON_ID := import sys; print(sys.base_prefix, sys.version.split()[0])
WANT_PYTHON := $(shell $(PYTHON) -c '$(PYTHON_ID)' 2>/dev/null)
VENV_PYTHON := $(shell $(BIN)/python -c '$(PYTHON_ID)' 2>/dev/null)
ifneq ($(WANT_PYTHON),$(VENV_PYTHON))
$(STAMP): FORCE
endif

$(STAMP): requirements.txt requirements-dev.txt client/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "make: needs Python >= 3.11 as '$(PYTHON)' (or say which: make PYTHON=python3.12 ...)"; \
		exit 1; }
	@if [ "$(WANT_PYTHON)" != "$(VENV_PYTHON)" ]; then \
		echo "making $(VENV) with $(PYTHON) ($(WANT_PYTHON))"; \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
			echo "make: '$(PYTHON) -m venv' failed (Debian, Ubuntu: apt install python3-venv)"; \
			exit 1; }; \
	fi
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(STAMP)

FORCE:

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_setup
	$(BIN)/python manage.py runserver 127.0.0.1:8000

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .

test: $(STAMP)
	scripts/services-up
	$(MAKE) lint
	$(TEST_ENV) $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null
	$(TEST_ENV) $(BIN)/pytest

# Figures for the issue notes, each as a ratio to a baseline measured in the same run.
bench: $(STAMP)
	scripts/services-up
	$(TEST_ENV) $(BIN)/python bench/ingest_feed.py
	$(TEST_ENV) $(BIN)/python bench/match_api.py
	$(TEST_ENV) $(BIN)/python bench/match_timing.py
	$(TEST_ENV) $(BIN)/python bench/match_amplification.py
	$(TEST_ENV) $(BIN)/python bench/concurrent_writes.py
	$(TEST_ENV) $(BIN)/python bench/flood.py
	$(TEST_ENV) $(BIN)/python bench/log_verify.py
	$(TEST_ENV) $(BIN)/python bench/audit_pages.py
	$(TEST_ENV) $(BIN)/python bench/client_sync.py
	$(TEST_ENV) $(BIN)/python bench/log_tree.py
	$(BIN)/python bench/match_index.py
	$(BIN)/python bench/image_hashing.py
	$(BIN)/python bench/image_worst_case.py
	scripts/fetch-test-images
	PYTHONPATH=client $(BIN)/python bench/robustness.py
	PYTHONPATH=client $(BIN)/python bench/client_hash.py
	PYTHONPATH=client:. $(BIN)/python bench/video.py
	$(BIN)/python bench/strict_json.py
	$(BIN)/python bench/merkle_proofs.py
	$(BIN)/python bench/notes.py
