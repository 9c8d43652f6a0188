# Sortie's front door. Every target loops over the Go modules listed in go.work.
# `make help` lists the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

MODULES      := api hack/tools services/kit services/auth services/workspace-operator services/mission-control services/library test/e2e test/chart
# Binaries in bin/, module:command: the services, the gateway, the
# workspace-agent (packed into its image) and the scripted stand-in agent CLI
# the tests and hack/demo-agents.sh install. The tests run these
# (SORTIE_TEST_BIN_DIR); kit/testbin mirrors this list.
COMMANDS     := services/auth:auth services/workspace-operator:workspace-operator services/workspace-operator:workspace-agent services/library:library services/mission-control:mission-control services/mission-control:fake-agent hack/tools:gateway
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT       ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS      := -s -w -X sortie.dev/services/kit/version.Version=$(VERSION) -X sortie.dev/services/kit/version.Commit=$(COMMIT)
# go test flags of every test target (hack/test.sh adds -race where it
# belongs). SORTIE_TEST_SCALE=2 doubles every wait in the tests, for a slow
# or loaded machine.
TEST_FLAGS   ?= -count=1 -timeout=30m
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

build: ## Build every binary (services, gateway, workspace-agent, fake-agent) into bin/.
	@mkdir -p bin
	@for c in $(COMMANDS); do mod=$${c%%:*}; cmd=$${c##*:}; \
	  echo "build $$cmd"; (cd $$mod && CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(CURDIR)/bin/$$cmd ./cmd/$$cmd); done

generate: ## Regenerate generated code and manifests (deepcopy, CRDs).
	@hack/generate.sh

tidy: ## go mod tidy in every module.
	@for m in $(MODULES); do echo "tidy $$m"; (cd $$m && GOWORK=off go mod tidy); done

##@ Check

test: deps kube-binaries build ## Every test: unit, integration (real Redis, kube-apiserver) and the real node; as root.
	@TEST_FLAGS='$(TEST_FLAGS)' hack/test.sh

# Of bin/, -short tests start only the stand-in agent CLI.
test-unit: ## The fast loop: no root, no node, no Kubernetes binaries (-short skips what needs them).
	@hack/deps.sh unit
	@$(MAKE) -s build COMMANDS=services/mission-control:fake-agent >/dev/null
	@SORTIE_TEST_BIN_DIR=$(CURDIR)/bin go test -short -race -p 2 $(TEST_FLAGS) sortie.dev/...

lint: ## gofmt, go vet and Sortie's own checks (hack/tools/analysis) on every module.
	@bad=$$(gofmt -l $(MODULES)); if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi
	@cd hack/tools && CGO_ENABLED=0 go build -trimpath -o $(CURDIR)/bin/sortie-vet ./cmd/sortie-vet
	@# CGO off and -trimpath, as make build: vet then reuses its compiled packages.
	@for m in $(MODULES); do echo "vet $$m"; (cd $$m && export CGO_ENABLED=0 && go vet -trimpath ./... && \
	  go vet -trimpath -vettool=$(CURDIR)/bin/sortie-vet ./...); done

bench: deps ## Run the Go benchmarks of every module (figures go in docs/benchmarks.md).
	@for m in $(MODULES); do echo "=== bench $$m"; (cd $$m && go test $(BENCH_FLAGS) ./...); done

fuzz: ## Run every fuzz target for FUZZTIME (default 2m) each (hack/fuzz.sh); make test runs only their seeds.
	@hack/fuzz.sh

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

.PHONY: help run build generate tidy test test-unit lint bench verify deps kube-binaries images cluster-up cluster-down clean
