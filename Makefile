# EEveon: push-to-deploy server.
GO      ?= go
BIN     := bin/eeveon
DATA    ?= ./eeveon-data
LISTEN  ?= 127.0.0.1:2222

.PHONY: build run test unit integration bench fuzz vet fmt clean

build:
	$(GO) build -o $(BIN) ./cmd/eeveon

# A development server on $(LISTEN) with its data in $(DATA). On first
# start it registers the example site hello and your SSH key as admin.
run: build
	@EEVEON=$(BIN) DATA=$(DATA) LISTEN=$(LISTEN) sh examples/dev/run.sh

# Unit and integration tests (integration builds the binary and drives it
# with the real git and ssh clients).
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration:
	$(GO) test -race -count=1 -v ./integration/...

# Benchmarks next to baselines on this machine, in one run: pushes through
# the embedded server vs OpenSSH sshd + git receive-pack, push-to-live,
# ssh status vs ssh true, server RSS (integration/bench_test.go) and
# polling CPU per round (deployer/poll); then a table of medians and
# ratios. A few minutes; without sshd the OpenSSH baselines are skipped.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m ./... 2>&1 | $(GO) run ./integration/internal/benchtable

# Every fuzz target, FUZZTIME each (go test -fuzz takes one target at a
# time); the list is found, so a new target is fuzzed without an edit here.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for fz in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$fz"; \
			$(GO) test -run '^$$' -fuzz "^$$fz$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
