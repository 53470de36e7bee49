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
.PHONY: help test race bench fuzz lint run redis-up redis-down bench-check bench-pkgs

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

test: lint ## lint, start Redis (standalone + 3-master cluster), run go test -race ./..., the allocation tests without -race, fuzz each target briefly, bench-check, stop Redis
	$(REDIS) run bash -c '$(GO) test -race -count=1 ./... && $(GO) test -count=1 -run "Allocs" ./... && scripts/fuzz.sh $(TEST_FUZZTIME) && scripts/bench.sh check'

race: ## run the tests COUNT times under the race detector, against the real servers
	$(REDIS) run $(GO) test -race -count=$(COUNT) ./...

fuzz: ## run every fuzz target for FUZZTIME (default 30s), with the real servers up
	$(REDIS) run scripts/fuzz.sh $(FUZZTIME)

lint: ## gofmt check, go vet, staticcheck
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd benchmarks && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

run: ## run the load generator on an embedded Redis
	@echo "loadgen arrives with a later issue; meanwhile the store example runs on the embedded Redis:"
	$(GO) test -run '^Example' -v ./store/

redis-up: ## start the test servers and print their addresses (for running tests by hand)
	$(REDIS) up

redis-down: ## stop the test servers started by redis-up
	$(REDIS) down

# ---- benchmarks/ (issue 8): the comparison suite and its goals -------------
# benchmarks/ is its own module; scripts/bench.sh runs it and judges the goals
# written next to each benchmark. make test runs bench-check's script inside
# its own scripts/redis.sh run.

bench-check: ## run the comparison suite briefly; fail if a goal (a ratio against a peer, same run) is missed
	$(REDIS) run scripts/bench.sh check

bench: ## run the comparison suite longer and write benchmarks/RESULTS.md (fails as bench-check does)
	$(REDIS) run scripts/bench.sh full

bench-pkgs: ## run each package's own benchmarks against the real servers (BENCHTIME per benchmark)
	$(REDIS) run $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...
