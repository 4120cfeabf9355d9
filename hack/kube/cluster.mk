# Local Kubernetes control plane (issue #3): etcd + kube-apiserver + kube-controller-manager
# built from Go modules, plus the local node agent (test/dev infrastructure).
# Included from the root Makefile, which defines PYTHON (the project venv's python) and CACHE.

CACHE ?= $(or $(CERTMODEL_CACHE),$(HOME)/.cache/certmodel)
LOCALCLUSTER = CERTMODEL_CACHE=$(CACHE) PYTHONPATH=hack $(PYTHON) -m localcluster

.PHONY: kube-bins cluster-up cluster-down cluster-status

kube-bins: ## build (first run, ~11 min on 2 cores) or reuse (instant) etcd, kube-apiserver, kube-controller-manager, kubectl, helm
	@CERTMODEL_CACHE=$(CACHE) PYTHON=$(PYTHON) hack/kube/build.sh

cluster-up: kube-bins ## start the local control plane in the background; last line: KUBECONFIG=<path>
	@$(LOCALCLUSTER) up

cluster-down: ## stop the local control plane started by cluster-up
	@$(LOCALCLUSTER) down

cluster-status: ## show the local control plane's processes
	@$(LOCALCLUSTER) status
