# The README's test command is `make test`: it installs what the checks need and runs them.
GO ?= go

.PHONY: test build deps vet test-arm64

build:
	CGO_ENABLED=0 $(GO) build -o bin/mai ./cmd/mai

deps:
	@bash scripts/deps.sh

test: deps
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) build ./...
	$(GO) test -timeout 40m ./...
	# The model on the kernels a CPU without AVX-512 runs (MAI_CPU caps them).
	MAI_CPU=avx2 $(GO) test -count=1 ./model

# The portable (non-amd64) kernels, as arm64 binaries under qemu-user; slow.
test-arm64:
	@bash scripts/test-arm64.sh
