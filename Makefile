# docaxis developer commands. `make run` brings up a working axis; `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(shell find proto/docaxis -name '*.proto' | sort)
STAMP := $(VENV)/.installed


.PHONY: help dev lock proto proto-check proto-lint proto-release imports lint fmt typecheck manifests check test test-unit services-install audit \
	test-e2e services-up services-down run demo demo-federation down bench bench-calls soak chaos fuzz stateful clean screenshots client-wheel at-time

help:
	@echo "make run     start Postgres, RabbitMQ and docaxis on loopback (Ctrl-C stops)"
	@echo "make demo    send a document through a running 'make run'"
	@echo "make run HUBS=2  a second hub beside the first; make demo-federation sends across them"
	@echo "make audit   export the running axis's ledger and verify it offline"
	@echo "make client-wheel  build the docaxis-client wheel (the SDK) into dist/"
	@echo "make down    stop everything 'make run' started"
	@echo "make test    static checks, then the whole suite (unit, integration, e2e)"
	@echo "make bench   the delivery path end to end, ceilings, circular, ledger (10-15 min;"
	@echo "             BENCH_ARGS=--quick about 2 min; --json FILE, --plot FILE, --profile SVG)"
	@echo "make bench-calls  server CPU per unary gRPC call: docaxis's call stack against a bare"
	@echo "             grpc.aio server, both over mutual TLS (about 30 s; BENCH_CALLS_ARGS=--help)"
	@echo "make soak    half the sustained rate for 30 min with agencies coming and going: memory,"
	@echo "             files, connections, queues, latency flat? anything lost? (SOAK_ARGS=--minutes N"
	@echo "             --rate N; plot and samples in .local/soak)"
	@echo "make chaos   faults under load (replica, sequencer leader, RabbitMQ node, Postgres"
	@echo "             primary then promotion, DMS stream, gateway):"
	@echo "             recovery time per fault, then lost = 0, duplicated = 0, audit verify"
	@echo "make screenshots  re-take the admin console screenshots in docs/screenshots"
	@echo "make at-time AT='2026-12-31 17:30 UTC' TESTS=tests/...  tests under a moved clock"

# The virtualenv, installed from the exact versions in constraints.txt.
# The SDK (clients/python) is a distribution of its own that the services depend on.
$(STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e clients/python -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)

# Re-resolve the newest versions allowed by pyproject.toml and record them in constraints.txt.
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e clients/python -e '.[dev]'
	{ echo '# Exact versions every machine installs (regenerate with `make lock`).'; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^setuptools=='; } > constraints.txt
	rm -rf .lock-venv

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I proto \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--python_out=proto --grpc_python_out=proto --mypy_out=proto --mypy_grpc_out=proto \
		$(PROTOS)

# Regenerates into a scratch copy and fails if the committed code differs.
proto-check: $(STAMP)
	rm -rf .run/proto-check && mkdir -p .run/proto-check
	cd proto && cp --parents buf.yaml $$(find docaxis -name '*.proto' -o -name '__init__.py') ../.run/proto-check/
	$(BIN)/python -m grpc_tools.protoc -I .run/proto-check \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--python_out=.run/proto-check --grpc_python_out=.run/proto-check \
		--mypy_out=.run/proto-check --mypy_grpc_out=.run/proto-check \
		$(patsubst proto/%,.run/proto-check/%,$(PROTOS))
	diff -r -x '__pycache__' proto .run/proto-check || \
		{ echo "generated protobuf code is stale: run 'make proto' and commit"; exit 1; }

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# The import rules of pyproject's [tool.importlinter] (layers, the exchange's own directory view).
imports: $(STAMP)
	PYTHONPATH=.:proto $(BIN)/lint-imports --no-cache  # the tree here, not an installed copy

# buf's lint, and its breaking-change check against the last released protos (PROTO_RELEASE,
# a buf image committed by `make proto-release` when a release is cut).
PROTO_RELEASE := docs/proto-v1.binpb
proto-lint: $(STAMP)
	cd proto && ../$(BIN)/buf lint && ../$(BIN)/buf breaking --against ../$(PROTO_RELEASE)

proto-release: $(STAMP)
	cd proto && ../$(BIN)/buf build -o ../$(PROTO_RELEASE)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The packages pyproject names, then the deployment tools (mypy takes files or packages, not both).
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy $(DEPLOY_TOOLS)

DEPLOY_TOOLS := $(shell find deploy -name '*.py' | sort)

# The deployment manifests (deploy/): compose, Dockerfile, Kubernetes, systemd, validated offline
# (deploy/check_manifests.py); systemd-analyze comes from install.sh.
manifests: $(STAMP) services-install
	$(BIN)/python deploy/check_manifests.py

check: proto-check proto-lint lint imports typecheck manifests

# The whole suite: the integration and e2e tiers start their own Postgres and RabbitMQ on
# test ports (see tests/conftest.py) and stop them afterwards.
test: check services-install
	bash deploy/local/install.sh --browser
	$(BIN)/pytest

# Re-takes the admin console's screenshots checked in under docs/screenshots.
screenshots: $(STAMP) services-install
	bash deploy/local/install.sh --browser
	DOCAXIS_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/e2e/test_admin_console.py

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

services-install:
	bash deploy/local/install.sh

# Postgres and RabbitMQ start side by side, as the suite's session does (tests/infra.py): neither
# needs the other, so the broker's ~6 s start no longer waits behind Postgres's (0.3-0.5 s with
# its data, 2.5 s on a first run's initdb). Either one failing fails the target.
services-up: services-install
	bash deploy/local/postgres.sh start & database=$$!; \
	bash deploy/local/rabbitmq.sh start; broker=$$?; \
	wait $$database && exit $$broker

services-down:
	-bash deploy/local/rabbitmq.sh stop
	-bash deploy/local/postgres.sh stop

# Settings of `make run`: the environment first, then the defaults in deploy/local/dev.env (the
# URLs follow DOCAXIS_PG_PORT / DOCAXIS_AMQP_PORT). `make run` records what it used in
# $DOCAXIS_LOCAL_DIR/run.env, so `make demo` and `make audit` (environment first, then that record,
# then the defaults) reach the axis it serves.
DEV_ENV := set -a && source deploy/local/dev.env && set +a
RUN_RECORD = "$${DOCAXIS_LOCAL_DIR:-.local/dev}/run.env"
CLIENT_ENV := set -a && { test ! -f $(RUN_RECORD) || source $(RUN_RECORD); } && $(DEV_ENV)

# Starts the local Postgres and RabbitMQ, migrates, seeds demo agencies and serves until Ctrl-C.
# The demo PKI (certificates for mutual TLS and signing; never production) is created if missing,
# and so are the ledger key, two demo witnesses' keys, and the auditor's pinned policy (log key,
# both witnesses, quorum 2; in production: published out of band); `make audit` and the admin
# console verify against that policy, never against the export's own keys. The two witnesses
# (`docaxis witness run`, C2SP tlog-witness) run as separate processes, as a provincial
# inspectorate and the national hub would run them; the ledger serves only checkpoints both
# cosigned.
# `make run HUBS=2` starts a second hub beside the first (deploy/local/second-hub.sh): hub B
# (ho-chi-minh, DOCAXIS_HUB_B_GRPC_ADDRESS 127.0.0.1:50061) with its own database, broker
# virtual host, demo PKI and ledger key under $DOCAXIS_LOCAL_DIR/hub-b; the hubs trust each
# other's CA, peer with each other and route each other's codes. `make demo-federation` then
# sends from a ward of hub A to a department of hub B and back.
HUBS ?= 1
run: $(STAMP) services-up
	$(DEV_ENV) && \
	$(BIN)/docaxis pki dev-setup --dir "$$DOCAXIS_PKI_DIR" && \
	{ test -f "$$DOCAXIS_LEDGER_KEY_FILE" || \
	  $(BIN)/docaxis ledger keygen --out "$$DOCAXIS_LEDGER_KEY_FILE"; } && \
	for n in 1 2; do test -f "$$DOCAXIS_LOCAL_DIR/witness-$$n.key" || { \
	  rm -f "$$DOCAXIS_LOCAL_DIR/trust-policy.json" && $(BIN)/docaxis witness keygen \
		--name "witness-$$n.docaxis.local" --out "$$DOCAXIS_LOCAL_DIR/witness-$$n.key"; } || exit 1; done && \
	w1="$$($(BIN)/docaxis witness vkey --key-file "$$DOCAXIS_LOCAL_DIR/witness-1.key")" && \
	w2="$$($(BIN)/docaxis witness vkey --key-file "$$DOCAXIS_LOCAL_DIR/witness-2.key")" && \
	log_vkey="$$($(BIN)/docaxis ledger vkey --key-file "$$DOCAXIS_LEDGER_KEY_FILE" | head -n 1)" && \
	{ test -f "$$DOCAXIS_LOCAL_DIR/trust-policy.json" || \
	  $(BIN)/docaxis ledger trust-policy --key-file "$$DOCAXIS_LEDGER_KEY_FILE" \
		--witness-vkey "$$w1" --witness-vkey "$$w2" --out "$$DOCAXIS_LOCAL_DIR/trust-policy.json"; } && \
	export DOCAXIS_LEDGER_WITNESSES="http://$$DOCAXIS_DEMO_WITNESS_1 $$w1,http://$$DOCAXIS_DEMO_WITNESS_2 $$w2" && \
	case "$(HUBS)" in 1) ;; 2) hub_a="$$(bash deploy/local/second-hub.sh prepare)" && \
	  eval "$$hub_a" ;; *) echo "HUBS=$(HUBS): 1 or 2" >&2; exit 2 ;; esac && \
	bash deploy/local/record-env.sh > $(RUN_RECORD) && \
	{ for n in 1 2; do address_var="DOCAXIS_DEMO_WITNESS_$$n"; \
	    $(BIN)/docaxis witness run --key-file "$$DOCAXIS_LOCAL_DIR/witness-$$n.key" \
		--log-vkey "$$log_vkey" --state "$$DOCAXIS_LOCAL_DIR/witness-$$n" \
		--address "$${!address_var}" & witnesses="$$witnesses $$!"; done; \
	  $(BIN)/python -m gateway & gateway=$$!; \
	  if test "$(HUBS)" = 2; then \
	    bash deploy/local/second-hub.sh serve > "$$DOCAXIS_LOCAL_DIR/hub-b/docaxis.log" 2>&1 & \
	    hub_b=$$!; echo "second hub: log in $$DOCAXIS_LOCAL_DIR/hub-b/docaxis.log"; \
	    bash deploy/local/second-hub.sh routes "$$hub_b" & hub_b="$$hub_b $$!"; fi; \
	  trap 'kill $$gateway $$witnesses $$hub_b 2>/dev/null' EXIT; \
	  $(BIN)/docaxis run --seed-demo; }

# The docaxis-client wheel (the SDK DMS integrators install, without the services) in dist/.
client-wheel: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps --quiet -w dist clients/python

demo: $(STAMP)
	$(CLIENT_ENV) && $(BIN)/docaxis demo

demo-federation: $(STAMP)
	$(CLIENT_ENV) && { test -n "$${DOCAXIS_HUB_B_GRPC_ADDRESS:-}" || \
	  { echo "no second hub: start the hubs with make run HUBS=2 first" >&2; exit 2; }; } && \
	$(BIN)/docaxis demo-federation --hub-b-address "$$DOCAXIS_HUB_B_GRPC_ADDRESS" \
		--hub-b-pki "$$DOCAXIS_HUB_B_PKI_DIR"

# Exports the running axis's ledger and verifies it offline (what an auditor does).
audit: $(STAMP)
	$(CLIENT_ENV) && export_dir="$$DOCAXIS_LOCAL_DIR/audit-export" && \
		rm -rf "$$export_dir" && \
		$(BIN)/docaxis audit export "$$export_dir" && \
		$(BIN)/docaxis audit verify full "$$export_dir" \
			--trust-policy "$$DOCAXIS_LOCAL_DIR/trust-policy.json"

down: services-down

# Starts its own Postgres, RabbitMQ and docaxis on the BENCH_*_PORT ports (benchmarks/stack.py).
bench: $(STAMP) services-install
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# One unary call's server CPU through docaxis's interceptor stack and a bare grpc.aio server, over
# mutual TLS, no database or broker (benchmarks/calls.py).
bench-calls: $(STAMP)
	$(BIN)/python -m benchmarks.calls $(BENCH_CALLS_ARGS)

# A steady load at half the sustained rate (a ramp finds it, or SOAK_ARGS=--rate N) for 30
# minutes (SOAK_ARGS=--minutes N) while agencies disconnect and come back, on its own Postgres,
# RabbitMQ and docaxis on the SOAK_*_PORT ports; prints whether each sampled series stayed flat
# and whether a copy was lost or duplicated (exit 1 if so), and the plot's path.
soak: $(STAMP) services-install
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

# Two replicas, the gateway and a steady load on its own three-node RabbitMQ cluster and Postgres
# primary + standby (CHAOS_* ports, benchmarks/chaos.py); kills and cuts in turn, prints the
# recovery times and health, fails on any loss.
chaos: $(STAMP) services-install
	$(BIN)/python -m benchmarks.chaos $(CHAOS_ARGS)

# Every parser of outside bytes at FUZZ_CASES generated inputs each, with a fresh seed, an
# address-space cap (unbounded memory fails as MemoryError) and a 10 s bound per input (a hang
# fails); crashing inputs are kept in tests/fuzz/regressions, which `make test` replays.
# `make fuzz FUZZ_TARGETS=edxml,crl FUZZ_CASES=1000000` narrows or widens it.
FUZZ_CASES ?= 100000
FUZZ_TARGETS ?=
fuzz: $(STAMP)
	ulimit -v 8000000 && DOCAXIS_FUZZ_CASES=$(FUZZ_CASES) DOCAXIS_FUZZ_RANDOM=1 \
		DOCAXIS_FUZZ_HANG_S=10 DOCAXIS_FUZZ_TARGETS=$(FUZZ_TARGETS) \
		$(BIN)/pytest tests/fuzz -o timeout=0 -q -p no:cacheprovider --hypothesis-show-statistics

# The exchange's lifecycle state machine (tests/integration/contract/test_lifecycle_machine.py)
# over the fakes and Postgres, STATEFUL_RUNS runs each with a fresh seed (`make test` runs a
# fixed, derandomised few).
STATEFUL_RUNS ?= 2000
stateful: $(STAMP) services-install
	DOCAXIS_STATEFUL_RUNS=$(STATEFUL_RUNS) DOCAXIS_STATEFUL_RANDOM=1 \
		$(BIN)/pytest tests/integration/contract/test_lifecycle_machine.py -o timeout=0 -q \
		-p no:cacheprovider

# The tests in TESTS under a clock moved to the UTC instant AT, to find those that depend on the
# time of day, the weekday or the month (docs/perf/README.md, "Tests that depend on the clock").
# libfaketime moves it by one offset in every process of the run (Postgres and RabbitMQ too: a
# start instant instead, `@AT`, starts each process's clock anew and sets them apart).
AT ?= 2026-12-07 16:30:00 UTC
TESTS ?= tests/integration/test_reports.py
at-time: $(STAMP) services-install
	command -v faketime >/dev/null || { apt-get update -q && apt-get install -y -q faketime; }
	offset=$$(( $$(date -u -d "$(AT)" +%s) - $$(date -u +%s) )); \
		faketime -f "$$( ((offset < 0)) || printf +)$$offset" $(BIN)/pytest -q -p no:cacheprovider $(TESTS)

clean: services-down
	rm -rf .local .run
