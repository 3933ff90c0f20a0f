# backflow — build, run the quickstart, test, benchmark.
GO      ?= go
BIN     := bin/backflow
PKGS    := ./...
# How long make fuzz runs each fuzz target.
FUZZTIME ?= 30s
# Integration tests start PostgreSQL clusters and Kafka brokers; two at a time suits a small machine.
TESTFLAGS ?= -count=1 -timeout 20m -p 2

.PHONY: build run prereq test fuzz bench lint docs clean

build:
	$(GO) build -o $(BIN) ./cmd/backflow

## run: the quickstart — local PostgreSQL with demo tables, embedded Kafka, capture, changes shown live.
run:
	$(GO) build -o bin/quickstart ./examples/quickstart
	./bin/quickstart

## prereq: checks (as root with apt-get: installs) every tool the tests run, and stops with one
## message listing what is missing otherwise; test runs it first.
prereq:
	@.ci/prereq

test: prereq
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

## fuzz: every fuzz target for FUZZTIME each (make test runs their seed corpora). go test fuzzes
## one target per run, so the targets of each package with any are listed and run in turn; a
## failing input is written to that package's testdata/fuzz and the run stops.
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' --exclude-dir=.git --exclude-dir=.backflow '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for target in $$($(GO) test -list '^Fuzz' $$dir | grep '^Fuzz'); do \
			echo "== $$dir $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

## bench: benchmark programs; each prints RESULT lines (see the README, "Benchmarks").
## BENCHFLAGS go to capture, snapshot, sink, e2e, bigtx and model (flags they share: -bin, -keep,
## -timeout); CAPTUREFLAGS, SNAPSHOTFLAGS, SINKFLAGS, E2EFLAGS, BIGTXFLAGS and MODELFLAGS to one
## each, e.g. make bench SINKFLAGS='-records 200000' SNAPSHOTFLAGS='-parallelism 1,4' BIGTXFLAGS='-rounds 5'.
## The sink runs on insert-only and on mixed changes (RESULT sink, RESULT sink_mixed); the e2e
## bench at 5,000 and 20,000 rows/s (one RESULT e2e each); the model bench diffs a 1,000,000-row
## model with 1% changed against COPY of the same query, keyed by an integer and by text (two
## RESULT model lines).
bench:
	$(GO) run ./bench/capture $(BENCHFLAGS) $(CAPTUREFLAGS)
	$(GO) run ./bench/snapshot $(BENCHFLAGS) $(SNAPSHOTFLAGS)
	$(GO) run ./bench/sink -mixed $(BENCHFLAGS) $(SINKFLAGS)
	$(GO) run ./bench/sink -replay $(BENCHFLAGS) $(SINKFLAGS)
	$(GO) run ./bench/e2e $(BENCHFLAGS) $(E2EFLAGS)
	$(GO) run ./bench/bigtx $(BENCHFLAGS) $(BIGTXFLAGS)
	$(GO) run ./bench/model $(BENCHFLAGS) $(MODELFLAGS)
	$(GO) run ./bench/model -key email $(BENCHFLAGS) $(MODELFLAGS)
	$(GO) run ./bench/hubspot
	$(GO) run ./bench/salesforce
	$(GO) run ./bench/shopify

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

## docs: the connector reference, generated from the connectors' declared settings.
docs:
	$(GO) run ./cmd/backflow docs > docs/connectors.md

clean:
	rm -rf bin .backflow
