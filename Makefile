# Fleet: developer entry points. `make` alone lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

CONFIGURATION ?= Release
WORKERS ?= 2
HOSTS ?= 3
# make fleet-sim BROKERS=3: a RabbitMQ node on each of the first BROKERS servers, clustered (1: one node on the bridge).
BROKERS ?= 1
# Heat tasks of `make demo` (fleet demo --count).
DEMO_COUNT ?= 1000
# The local fleet's folder (servers' data, settings, env, logs, pid files). Another folder, with other ports
# (FLEET_PG_PORT, FLEET_AMQP_PORT, ... see docs/configuration.md), is a second fleet beside the first.
FLEET_HOME ?= $(CURDIR)/.fleet
override FLEET_HOME := $(abspath $(FLEET_HOME))
export CONFIGURATION WORKERS FLEET_HOME

SOLUTION := Fleet.sln
CLI := dotnet src/Fleet.Cli/bin/$(CONFIGURATION)/net10.0/fleet.dll
# A hung test ends the test host after this long instead of blocking the run (and CI) for ever.
TEST_ARGS ?= --blame-hang-timeout 20m --blame-hang-dump-type none
# The randomized soak (make chaos) takes minutes; make test runs the bounded fault tests only.
TEST_FILTER ?= Category!=Chaos

.PHONY: help build up down status psql migrate demo bench bench-compare fleet-sim test test-unit test-integration chaos format clean clean-data

help: ## list the targets
	@echo "Fleet make targets:"
	@awk -F':.*## ' '/^[a-z-]+:.*## / { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: WORKERS=$(WORKERS) CONFIGURATION=$(CONFIGURATION) KEEP_SERVICES=1 (down keeps PostgreSQL/RabbitMQ)"
	@echo "  demo: DEMO_COUNT=$(DEMO_COUNT) (heat tasks)  FLEET_HOME=$(FLEET_HOME) (with other FLEET_*_PORT: a second fleet)"
	@echo "  fleet-sim: HOSTS=$(HOSTS) BROKERS=$(BROKERS) FAULTS=(1 if BROKERS>=3) COUNT=1000 SIM_CPU=(cores/HOSTS) FLEET_SKIP_BUILD=1"
	@echo "  bench: COUNT=1 (scale factor on task counts) RUNS=3 SLEEP_IO=1024 BENCH_WORKLOADS=\"noop sha256 sieve heat sleep\" BENCH_ARGS="
	@echo "  bench, classic against quorum lanes: BENCH_WORKLOADS=queues QUEUE_ROUNDS=2 QUEUE_WORKLOADS=\"noop sha256\" BROKERS=1 (3: on a loopback cluster)"
	@echo "  bench-compare: COUNT=1 RUNS=3 SLEEP_IO=1024 CELERY_SLEEP_POOL=threads CELERY_SLEEP_THREADS=200 COMPARE_WORKLOADS=\"noop sha256 sieve heat sleep\""

build: ## dotnet build the solution (Release)
	dotnet build $(SOLUTION) -c $(CONFIGURATION)

up: ## install the servers if missing, start PostgreSQL + RabbitMQ (private, 127.0.0.1), build, migrate, API and WORKERS workers; writes .fleet/env
	infra/local/fleet.sh up

down: ## stop the API and workers (by pid; SIGKILL after 60 s), then the local servers (KEEP_SERVICES=1 keeps them)
	infra/local/fleet.sh down

status: ## show what runs (servers, API, workers)
	@infra/local/fleet.sh status || true

psql: ## psql on the fleet database (as the fleet role, from .fleet/env)
	@test -f "$(FLEET_HOME)/env" || { echo "no $(FLEET_HOME)/env yet: run 'make up' (or infra/local/services.sh start) first" >&2; exit 1; }
	@. "$(FLEET_HOME)/env" && exec psql "$$FLEET_PG_DSN"

migrate: ## start the servers if needed, build, then apply the database migrations (fleet migrate)
	infra/local/fleet.sh migrate

demo: up ## make up, then submit the 1,000-task heat job (DEMO_COUNT), show progress and the SQL summary
	. "$(FLEET_HOME)/env" && $(CLI) demo --count $(DEMO_COUNT)

bench: ## make up, then the standard benchmark (fleet-bench, bench/Fleet.Bench) into bench/results/ (COUNT=0.1 RUNS=1 for a quick run)
	infra/local/bench.sh

bench-compare: ## Celery (Debian's python3-celery) then Fleet, same workloads and counts; one Fleet/Celery table (~15 min)
	bench/celery/compare.sh

fleet-sim: ## HOSTS simulated servers (network namespaces, own addresses, root) run the heat demo; per-server SQL; all removed after; BROKERS=3: a broker cluster, one node lost mid-run
	infra/local/install.sh postgresql rabbitmq-server iproute2 jq
	HOSTS=$(HOSTS) BROKERS=$(BROKERS) infra/local/fleet-sim.sh

test: ## install the servers if missing, then run every test (results in TestResults/*.trx)
	infra/local/install.sh
	rm -rf TestResults
	dotnet test $(SOLUTION) -c $(CONFIGURATION) \
	  --logger "trx;LogFilePrefix=results" --logger "console;verbosity=normal" \
	  --results-directory TestResults --filter "$(TEST_FILTER)" $(TEST_ARGS)

test-unit: ## unit tests only: no servers, no apt, well under a minute
	dotnet test tests/Fleet.UnitTests -c $(CONFIGURATION) --logger "console;verbosity=minimal" $(TEST_ARGS)

test-integration: ## install the servers if missing, then the integration tests (private PostgreSQL/RabbitMQ, real workers)
	infra/local/install.sh
	dotnet test tests/Fleet.IntegrationTests -c $(CONFIGURATION) \
	  --logger "console;verbosity=normal" --filter "$(TEST_FILTER)" $(TEST_ARGS)

chaos: ## randomized soak: 20,000 tasks (FLEET_CHAOS_TASKS) through worker kills, broker/database restarts, purges, hostile input; a 3-node broker cluster losing a node and a server mid-run (20,000 tasks)
	infra/local/install.sh
	dotnet build $(SOLUTION) -c $(CONFIGURATION) -v q
	dotnet test tests/Fleet.IntegrationTests -c $(CONFIGURATION) --no-build --filter "Category=Chaos" \
	  --logger "console;verbosity=detailed" $(TEST_ARGS)

format: ## apply the code style of .editorconfig (whitespace, usings, style fixes) to every project
	dotnet format $(SOLUTION) --exclude src/Fleet.Persistence/Migrations

clean: ## remove build outputs and test results (keeps .fleet/ data)
	-dotnet clean $(SOLUTION) -c $(CONFIGURATION) -v q
	rm -rf TestResults

clean-data: ## stop everything and delete the local servers' data, settings and secrets (.fleet/)
	infra/local/fleet.sh down
	infra/local/services.sh purge
