# Sortie's front door. Every target loops over the Go modules listed in go.work.
# `make help` lists the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

MODULES      := api hack/tools services/kit services/auth services/workspace-operator services/mission-control services/library test/e2e test/chart
# Service binaries: module:command
COMMANDS     := services/auth:auth services/workspace-operator:workspace-operator services/library:library services/mission-control:mission-control hack/tools:gateway
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT       ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS      := -s -w -X sortie.dev/services/kit/version.Version=$(VERSION) -X sortie.dev/services/kit/version.Commit=$(COMMIT)
# One go test over every module of go.work: packages of all modules share
# one build and run three at a time (most tests wait on Pods and processes,
# not on the CPU), which takes a third off the wall time on 2 cores.
TEST_FLAGS   ?= -race -count=1 -timeout=25m -p 3
BENCH_FLAGS  ?= -run='^$$' -bench=. -benchmem -count=1
KUBE_VERSION := v1.37.2
KUBE_BIN     := $(CURDIR)/bin/k8s/$(KUBE_VERSION)

export KUBEBUILDER_ASSETS := $(KUBE_BIN)

##@ General

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Develop

run: deps ## Start the platform on this machine (see README); Ctrl-C stops it.
	@hack/run.sh

build: ## Build every service binary into bin/.
	@mkdir -p bin
	@for c in $(COMMANDS); do mod=$${c%%:*}; cmd=$${c##*:}; \
	  echo "build $$cmd"; (cd $$mod && CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(CURDIR)/bin/$$cmd ./cmd/$$cmd); done

generate: ## Regenerate generated code and manifests (deepcopy, CRDs).
	@hack/generate.sh

tidy: ## go mod tidy in every module.
	@for m in $(MODULES); do echo "tidy $$m"; (cd $$m && GOWORK=off go mod tidy); done

##@ Check

test: deps kube-binaries ## Every module's tests (real Redis, kube-apiserver and a real kubelet node).
	@was_up=no; hack/cluster.sh is-up >/dev/null 2>&1 && was_up=yes; \
	  hack/cluster.sh up; \
	  failed=0; go test $(TEST_FLAGS) sortie.dev/... || failed=1; \
	  if [ $$was_up = no ]; then echo "=== cluster lifecycle: down, nothing left, up again, down"; \
	    { hack/cluster.sh down && hack/cluster.sh verify-down && hack/cluster.sh up && \
	      hack/cluster.sh down && hack/cluster.sh verify-down; } || { failed=1; echo "FAIL: cluster lifecycle"; }; fi; \
	  if [ $$failed -ne 0 ]; then echo "FAIL: some modules failed"; exit 1; fi; echo "PASS: all modules"

lint: ## gofmt and go vet on every module.
	@bad=$$(gofmt -l $(MODULES)); if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi
	@for m in $(MODULES); do echo "vet $$m"; (cd $$m && go vet ./...); done

bench: deps ## Run the Go benchmarks of every module (figures go in docs/benchmarks.md).
	@for m in $(MODULES); do echo "=== bench $$m"; (cd $$m && go test $(BENCH_FLAGS) ./...); done

verify: generate lint ## Regenerate and fail on a diff; build every module on its own (GOWORK=off).
	@git diff --exit-code -- . || { echo "generated files are out of date: run make generate and commit"; exit 1; }
	@for m in $(MODULES); do echo "verify $$m (GOWORK=off)"; \
	  (cd $$m && GOWORK=off go mod tidy -diff && GOWORK=off go build ./... && GOWORK=off go vet ./...); done

##@ Dependencies

deps: ## Check (and on Debian/Ubuntu as root, install) what the tests and `make run` need.
	@hack/deps.sh

kube-binaries: ## Build etcd and the Kubernetes control plane into bin/k8s (once per version).
	@hack/kube-binaries.sh >/dev/null

images: ## Build Sortie's own images into bin/images (loaded into the local node when it is up).
	@hack/images.sh

cluster-up: ## Start the local single-node cluster (builds kubelet, images, ... on first use).
	@hack/cluster.sh up

cluster-down: ## Stop the local cluster and remove its containers (keeps etcd data and volumes).
	@hack/cluster.sh down

clean: ## Remove build output (keeps the cached Kubernetes binaries).
	@rm -f bin/auth

.PHONY: help run build generate tidy test lint bench verify deps kube-binaries images cluster-up cluster-down clean
