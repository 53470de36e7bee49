# stickyroute: `make test` sets up everything it needs (the Redis servers
# included) and tears it down again; `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
# Per fuzz target: make test fuzzes briefly, make fuzz as long as you say.
FUZZTIME ?= 30s
TEST_FUZZTIME ?= 5s
BENCHTIME ?= 1s
COUNT ?= 3
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
REDIS := scripts/redis.sh

.DEFAULT_GOAL := help
.PHONY: help test race bench fuzz lint run redis-up redis-down

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

test: lint ## lint, start Redis (standalone + 3-master cluster), run go test -race ./..., the allocation tests without -race, fuzz each target briefly, stop Redis
	$(REDIS) run bash -c '$(GO) test -race -count=1 ./... && $(GO) test -count=1 -run "Allocs" ./... && scripts/fuzz.sh $(TEST_FUZZTIME)'

race: ## run the tests COUNT times under the race detector, against the real servers
	$(REDIS) run $(GO) test -race -count=$(COUNT) ./...

bench: ## run the benchmarks against the real servers (BENCHTIME per benchmark)
	$(REDIS) run $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

fuzz: ## run every fuzz target for FUZZTIME (default 30s)
	scripts/fuzz.sh $(FUZZTIME)

lint: ## gofmt check, go vet, staticcheck
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

run: ## run the load generator: ~10 s of a small fleet on an embedded Redis (ARGS="-scenario drain" etc.)
	$(GO) run ./cmd/loadgen $(ARGS)

redis-up: ## start the test servers and print their addresses (for running tests by hand)
	$(REDIS) up

redis-down: ## stop the test servers started by redis-up
	$(REDIS) down
