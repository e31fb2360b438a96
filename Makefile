SERVICES := customer product inventory order billing crm msg gateway
GO ?= go

.PHONY: build images up down logs test smoke

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

test: ## every test: packages, services, system, compose smoke and e2e (needs Docker)
	$(GO) test -count=1 -timeout 40m ./...

smoke:
	scripts/smoke.sh
