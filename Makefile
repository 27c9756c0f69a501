# hurricane-nas developer targets. Every target bootstraps its own cached virtualenv.
SHELL := /bin/bash
VENV = $(shell scripts/bootstrap.sh | tail -n1)
PY = $(VENV)/bin/python
# The cached venv is shared by every clone on the machine and its editable install points at
# whichever clone bootstrapped last; this checkout's code must win for every process we start.
# .pypath/ holds only a `hurricane` link: the repository root itself must not be on the path
# (it would make `api` and `operator` importable top-level names).
$(shell mkdir -p "$(CURDIR)/.pypath" && ln -sfn ../hurricane "$(CURDIR)/.pypath/hurricane")
export PYTHONPATH := $(CURDIR)/.pypath$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: demo test test-slow test-faults test-cluster cluster-binaries training-operators cluster-up cluster-down lint bench screenshots ui

demo:  ## run the demo search end to end (digits, this CPU)
	$(PY) -m hurricane run examples/digits-cpu.yaml --store ./runs

test: lint  ## the default test run (CI)
	cd "$(CURDIR)" && $(PY) -m pytest -m "not slow and not cluster" -q

test-slow:  ## slower end-to-end tests: the service under faults, multi-process training, the demo spec (by hand before a landing; CI runs test and test-cluster)
	cd "$(CURDIR)" && $(PY) -m pytest -m "slow and not cluster" -q

test-faults:  ## the service part of test-slow: the service end to end and under faults (SIGKILL, Redis/API restarts, S3 stopped)
	cd "$(CURDIR)" && $(PY) -m pytest -m "slow and not cluster" -q tests/test_service_e2e.py tests/test_service_faults.py

cluster-binaries:  ## build etcd, the Kubernetes control plane, kubectl and Kueue from their pinned Go modules (cached)
	scripts/build_controlplane.sh

training-operators:  ## build JobSet's and Kubeflow Trainer's controller managers from their pinned Go modules (cached)
	scripts/build_training_operators.sh

test-cluster: cluster-binaries training-operators  ## the executor, Kueue, JobSet/Trainer, the chart and the HurricaneSearch CRD on a real control plane (kube-apiserver, controllers, scheduler, the node agent)
	cd "$(CURDIR)" && $(PY) -m pytest -m cluster -q

cluster-up: cluster-binaries  ## the Kubernetes mode on this machine: control plane, Kueue, node agent, Redis, S3 and the chart (in the background; prints HURRICANE_SERVER/TOKEN and KUBECONFIG)
	$(PY) -m hurricane cluster up

cluster-down:  ## stop what cluster-up started
	$(PY) -m hurricane cluster down

ui:  ## rebuild the dashboard's assets (dashboard/ -> api/ui/; bootstrap does it when they changed)
	scripts/build_ui.sh --force

screenshots:  ## the dashboard's screenshots (docs/dashboard/), from real searches of a local stack
	cd "$(CURDIR)" && $(VENV) >/dev/null && HURRICANE_SCREENSHOTS="$(CURDIR)/docs/dashboard" $(PY) -m pytest tests/test_dashboard.py -q

lint:  ## ruff, mypy, and import-layer contracts on the installed layout
	scripts/lint.sh "$(VENV)"

bench:  ## benchmarks; JSON results (and plots) go to bench/results/
	$(PY) bench/supernet_step.py --out bench/results/supernet_step.json
	$(PY) bench/predictor_nb201.py --out bench/results/predictor_nb201.json
	$(PY) bench/predictor_local.py --out bench/results/predictor_local.json
	$(PY) bench/predictor_local.py --spec bench/specs/predictor-cpu-large.yaml --out bench/results/predictor_local_large.json
	$(PY) bench/space_latency.py --out bench/results/space_latency.json
	$(PY) bench/one_proxy_nb201.py --out bench/results/one_proxy_nb201.json
	$(PY) bench/two_stage.py --store bench/.store --out bench/results/two_stage.json
	$(PY) bench/strategies.py --seeds 0 --store bench/.store --out bench/results/strategies.json
