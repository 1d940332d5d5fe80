# Handoff — see README.md. Every target that needs system packages depends on
# `deps`, which is idempotent and takes about a second when all is in place.
SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:/usr/local/sbin:$(PATH)
export LANG ?= C.UTF-8
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS := -X github.com/handoff/handoff/app.Version=$(VERSION)
# Apps run only behind a seccomp filter: every build links libcontainer's
# seccomp support (libseccomp, through cgo); the engine refuses to start an
# app in a binary built without it.
TAGS := seccomp
# Integration tests need root, namespaces, CRIU and Xvfb; they run one package
# at a time so that CPU-hungry suites do not disturb each other on 2 cores.
TEST_TIMEOUT ?= 40m

# staticcheck from the Go module proxy into bin/tools, pinned (2026.2.2,
# which knows Go 1.26); a new version is installed beside the old one.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := bin/tools/staticcheck-$(STATICCHECK_VERSION)
# Every fuzz target (internal/fuzz/fuzz.sh finds them) runs FUZZTIME in
# `make fuzz`, FUZZTIME_TEST in `make test`.
FUZZTIME ?= 60s
FUZZTIME_TEST ?= 2s

.PHONY: all deps build test unit vet staticcheck fuzz bench demo clean

all: build

deps:
	@bash packaging/install-deps.sh

build: bin/handoff

bin/handoff: $(shell find . -name '*.go' -not -path './bin/*') go.mod go.sum
	$(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $@ .

vet: staticcheck
	$(GO) vet -tags $(TAGS) ./...
	$(GO) vet -tags integration,$(TAGS) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

staticcheck: $(STATICCHECK)
	$(STATICCHECK) -tags $(TAGS) ./...
	$(STATICCHECK) -tags integration,$(TAGS) ./...

$(STATICCHECK):
	@mkdir -p bin/tools
	@echo "installing staticcheck $(STATICCHECK_VERSION) into bin/tools"
	GOBIN=$(CURDIR)/bin/tools/.install $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/tools/.install/staticcheck $@ && rmdir bin/tools/.install

# Each fuzz target for a minute (about a quarter of an hour in all).
fuzz: deps
	FUZZ_TAGS=$(TAGS) bash internal/fuzz/fuzz.sh $(FUZZTIME)

unit:
	$(GO) test -tags $(TAGS) -count=1 ./...

test: deps vet
	$(GO) test -tags integration,$(TAGS) -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./...
	FUZZ_TAGS=$(TAGS) bash internal/fuzz/fuzz.sh $(FUZZTIME_TEST)

bench: deps
	$(GO) test -tags integration,$(TAGS) -count=1 -p 1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./... | tee bench.out

demo: deps build
	@bash internal/demo/demo.sh

# make demo RUNS times in a row (default 10) while stress-ng keeps every core
# busy: pass/fail and downtime per run (demo-stress-out/summary.txt).
RUNS ?= 10
.PHONY: demo-stress
demo-stress: deps build
	@RUNS=$(RUNS) bash internal/demo/stress.sh

clean:
	rm -rf bin demo-out demo-stress-out bench.out

# dist/handoff_<version>_<arch>.deb (packaging/build-deb.sh; DIST=DIR elsewhere).
DIST ?= dist
.PHONY: package
package: deps
	@bash packaging/build-deb.sh $(DIST)

# dist/Handoff.tar.xz: `fyne package -os linux` from FyneApp.toml (desktop
# entry, icon, binary), checked against the .deb's desktop entry; installs
# the fyne CLI into bin/tools the first time.
.PHONY: fyne-package
fyne-package: build
	@bash packaging/fyne-package.sh $(DIST)

# Simulated workstations (network namespaces on a bridge) for trying Handoff
# by hand; the tests build their own with internal/testnet.
.PHONY: workstations workstations-down
workstations: deps build
	$(GO) run ./internal/testnet/cmd/workstations up

workstations-down:
	$(GO) run ./internal/testnet/cmd/workstations down
