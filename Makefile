# The two commands of the README: `make run` and `make test`. Each sets up what it needs on a
# fresh Debian machine with Python 3.11, and only that: `make run` the system packages for
# running (redis-server, PostgreSQL; apt-get when missing) and a virtualenv in .venv with the
# project (`make bootstrap`); `make test` also the test toolchain (`make bootstrap-test`:
# Chromium and its driver, systemd-analyze, promtool, the test and dev extras). Each step
# prints one line; a stamp in .venv makes it run once.

PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.test-installed
# promtool may be unpacked into the virtualenv (scripts/bootstrap-test.sh).
TEST_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: run test test-fast lint bench deps bootstrap bootstrap-test clean container \
	container-test torture openapi soak

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh $(PYTHON) $(VENV)
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) scripts/bootstrap-test.sh
	bash scripts/bootstrap-test.sh $(VENV)
	touch $(TEST_STAMP)

bootstrap: $(STAMP)

bootstrap-test: $(TEST_STAMP)

# Everything a developer needs (running, tests, linters).
deps: $(TEST_STAMP)

# `make run`: the service on private throwaway servers (`--dev`); `make run ARGS=--cluster`: a
# private Redis Cluster (3 masters, 3 replicas, needs redis-cli) instead of one redis-server.
# The command line is $(VENV)/bin/kaleido (docs/cli.md); it finds this stack by itself.
run: $(STAMP)
	@echo "make run: the CLI is $(CURDIR)/$(VENV)/bin/kaleido (docs/cli.md: putting it on PATH)"
	$(VENV)/bin/python run.py --dev $(ARGS)

test: $(TEST_STAMP)
	$(TEST_ENV) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# `make test-fast`: the suite without the tests marked slow (tests/conftest.py: service
# processes, the fault, campaign, red-team, property and fuzz suites, the browser, the Redis
# Cluster runs, the contract tests, the container image).
test-fast: $(TEST_STAMP)
	$(TEST_ENV) $(VENV)/bin/python -m pytest -m "not slow and not container" $(PYTEST_ARGS)

# `make container`: the service image (deploy/container/Containerfile) built with buildah on a
# Debian base made with debootstrap (scripts/container-build.sh; see docs/deploy.md).
container:
	bash scripts/container-build.sh

# `make container-test`: builds the image (cached layers when nothing changed) and runs it
# against private Redis and PostgreSQL; slow, so not part of `make test`.
container-test: $(TEST_STAMP)
	$(VENV)/bin/python -m pytest -m container tests/container $(PYTEST_ARGS)

# `make openapi`: writes docs/openapi.yaml and docs/openapi-ops.yaml from kaleido/http/openapi/
# (validated first); CHECK=1 only says whether the committed ones are current (docs/openapi.md).
openapi: $(TEST_STAMP)
	$(VENV)/bin/python -m kaleido.http.openapi $(if $(CHECK),--check) docs

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# `make torture`: the seeded fault campaign (tests/campaign, docs/campaign.md). MINUTES=30 runs
# random seeds for that long (one run by default); SEED=… replays a seed, FAULTS=1,4,7 only
# those faults of its schedule, SHRINK=1 looks for the smallest schedule that still fails;
# SCENARIO=dropped-connections RUNS=50; REDIS=cluster; the report goes to
# .state/campaign/REPORT.md, and with REFRESH=1 into docs/campaign-report.md too.
torture: $(TEST_STAMP)
	$(VENV)/bin/python -m tests.campaign \
		$(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(REDIS),--redis $(REDIS)) \
		$(if $(MINUTES),--minutes $(MINUTES)) $(if $(RUNS),--runs $(RUNS)) \
		$(if $(SEED),--seed $(SEED)) $(if $(FAULTS),--faults $(FAULTS)) \
		$(if $(SHRINK),--shrink) $(if $(REFRESH),--refresh) $(ARGS)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(TEST_STAMP) scripts/bench-deps.sh
	bash scripts/bench-deps.sh $(VENV)
	touch $(BENCH_STAMP)

# The benchmarks (see benchmarks/__main__.py), after wrk and the bench extra are installed.
bench: $(BENCH_STAMP)
	$(VENV)/bin/python -m benchmarks $(ARGS)

# `make soak MINUTES=30`: the service under 5,000 views/s over HTTP for that long (default 30),
# its resident memory sampled; ARGS=--trace names what grows (benchmarks/soak.py, docs/bounds.md).
soak: $(STAMP)
	$(VENV)/bin/python -m benchmarks.soak --minutes $(or $(MINUTES),30) $(ARGS)

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache

# `make docs`: the docs site (mkdocs.yml) into site/, with the last runs' reports
# (`tests/test_docs_site.py` builds it with --strict in `make test`); `make docs ARGS=serve`
# serves it while writing.
.PHONY: docs
docs: $(TEST_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs $(or $(ARGS),build --strict)
