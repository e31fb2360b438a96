SERVICES := customer product inventory order billing crm msg gateway archive
GO ?= go
FUZZTIME ?= 30s
# package:target; go test -fuzz runs one target at a time
FUZZ := ./internal/platform:FuzzDecode ./internal/shop:FuzzNewCustomer ./internal/shop:FuzzNewProduct \
	./internal/shop:FuzzNewOrder ./pkg/eventstore:FuzzDecodeEntry ./pkg/eventstore:FuzzEventDecode

.PHONY: build images up down logs test cluster-test smoke e2e fuzz bench soak ha-faults cluster-faults

build: ## static binaries in bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/ $(addprefix ./services/,$(SERVICES))

images: ## ordershop/*:local images, no registry needed
	scripts/build-local-images.sh

up: ## start everything and wait until healthy (gateway on :5000)
	scripts/up.sh

down: ## stop and remove containers, network and the Redis volume
	scripts/down.sh

logs:
	scripts/compose.sh logs -f --tail=100

test: images ## every test: packages, services, system, compose smoke and e2e (needs Docker)
	$(GO) test -count=1 -timeout 40m ./...
	cd deploy && $(GO) test -count=1 ./...
	$(GO) test -count=1 -tags otlp -run TestTracing ./internal/platform/
	$(MAKE) cluster-test

cluster-test: ## the event store, services and system on a 3-master Redis Cluster, with 1 and 4 stream partitions
	STREAM_PARTITIONS=4 $(GO) test -count=1 ./tests/acl/
	REDISTEST_CLUSTER=1 $(GO) test -count=1 ./pkg/... ./tests/system/
	REDISTEST_CLUSTER=1 STREAM_PARTITIONS=4 $(GO) test -count=1 ./pkg/... ./services/... ./tests/system/

smoke: images ## docker-compose up from a clean state, the original scenario, CRM stopped and started
	$(GO) test -count=1 -v ./tests/smoke/

e2e: images ## the stack in containers: CRM stopped, killed, replicated; Redis restarted; poison; bad input
	$(GO) test -count=1 -v ./tests/e2e/

fuzz: ## each fuzz target for FUZZTIME (30s, or a count: 100000x), one after the other; a failing input lands in testdata/fuzz
	set -e; for t in $(FUZZ); do $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) $${t%:*}; done

bench: ## the binaries under load beside their yardsticks; writes docs/BENCHMARKS.md (BENCHTIME, BENCH_QUICK=1)
	@since=$$(date +%s.%N); $(MAKE) --no-print-directory build && GO=$(GO) $(GO) run ./bench -since $$since $(BENCHFLAGS)

soak: images ## the compose stack under a steady create/update/delete cycle for SOAK_FOR (10m) at SOAK_RATE (240/s, half of what the compose stack takes on 2 cores), hot window HOT_RETENTION and mail records MAIL_RETENTION (2m): memory, restarts, lags, archive rows, -verify
	RATE_LIMIT=0 HOT_RETENTION=$${HOT_RETENTION:-2m} MAIL_RETENTION=$${MAIL_RETENTION:-2m} scripts/up.sh
	$(GO) run ./bench/soak -rate $${SOAK_RATE:-240} -for $${SOAK_FOR:-10m}

ha-faults: images ## the HA variant through a SIGKILL of the primary, a 20 s network cut of it and a replica restart, HA_RUNS (5) seeded runs each (HA_SEED), with Compose v2 too when COMPOSE_V2 names it: every acknowledged command kept once
	HA_RUNS=$${HA_RUNS:-5} $(GO) test -count=1 -v -timeout 4h -run '^TestHAFaults$$' ./tests/smoke/

cluster-faults: images ## the cluster variant through a SIGKILL of a master amid ha-faults' workload, HA_RUNS (5) seeded runs (HA_SEED), with Compose v2 too when COMPOSE_V2 names it: every acknowledged command kept once
	HA_RUNS=$${HA_RUNS:-5} $(GO) test -count=1 -v -timeout 4h -run '^TestClusterFaults$$' ./tests/smoke/
