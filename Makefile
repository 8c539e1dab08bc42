# clr — see README.md. Every target works on a fresh Debian machine with Go.
GO      ?= go
BIN     := bin
# System tools: Debian package:command (python3 runs rsync's rrsync, the mirrors' restriction in the push tests).
TOOLS_DEMO := openssl:openssl rsync:rsync openssh-client:ssh
TOOLS_TEST := $(TOOLS_DEMO) openssh-server:sshd qemu-utils:qemu-img python3:/usr/bin/python3
# Go-built test tools (govc, vcsim, pebble) go to .tools/bin, first on PATH.
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: all build demo test check fmt-check vet race tidy-check bench soak fuzz tools-demo tools-test clean

all: build

build:
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

tools-demo:
	@scripts/need-tools.sh $(TOOLS_DEMO)
	@scripts/need-gotools.sh

tools-test:
	@scripts/need-tools.sh $(TOOLS_TEST)
	@scripts/need-gotools.sh

## demo: the main job end to end on embedded defaults, all on 127.0.0.1.
demo: tools-demo build
	scripts/demo.sh

## test: every test, end-to-end scripts included.
test: tools-test
	$(GO) test -count=1 ./...

## check: what must be green before a commit.
check: tools-test fmt-check vet race tidy-check

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

tidy-check:
	$(GO) mod tidy -diff

## bench: hashing throughput and no-change rebuild, the subscriber on a
## 10,000-image list, clr-cache delta updates of a 1 GiB template vs rsync -a,
## then clr-server vs sshd + rrsync (needs root); writes
## docs/benchmarks.md. BENCH_ONLY=hash|subscribe|cache|server: one part.
bench: tools-test build
	@scripts/need-tools.sh time:/usr/bin/time
	scripts/bench.sh

## soak: kill -9 clr-cache at random moments (SOAK=200 times) and check the
## served tree is never mixed.
SOAK ?= 200
soak: tools-demo build
	scripts/soak-cache.sh $(SOAK)

## fuzz: a short run of every fuzz target (FUZZTIME=30s for longer).
FUZZTIME ?= 10s
fuzz:
	@for p in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
			echo "== $$p $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN)
