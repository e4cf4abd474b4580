# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tritonforge-installed

.PHONY: demo test lint install clean bench compare faults soak zoo promtool checkov monitor-bench

demo: $(STAMP)  ## build digits and MiniLM with gated INT8 variants, serve them, check them, load-test against an SLO
	$(BIN)/tritonforge demo

test: $(STAMP) promtool checkov  ## the whole suite: unit tests and integration tests against the real embedded tritonserver
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check tritonforge tests
	$(BIN)/ruff format --check tritonforge tests
	$(BIN)/mypy tritonforge

install: $(STAMP)

# torch is installed first, pinned, so that pip takes the CPU build on this disk and never a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# promtool checks and unit-tests the alert rules in k8s/monitoring; it comes with Debian's prometheus package.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
promtool:
	@command -v promtool >/dev/null 2>&1 || $(APT_INSTALL) >/dev/null || \
		{ $(SUDO) apt-get update >/dev/null && $(APT_INSTALL) >/dev/null; }
	@promtool --version | head -1

# checkov (policy checks of the rendered manifests) pins a large dependency tree of its own: it lives in its own venv.
CHECKOV_VENV := .venv-checkov
checkov: $(CHECKOV_VENV)/bin/checkov
$(CHECKOV_VENV)/bin/checkov:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==3.3.30"

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build runs .pytest_cache

bench: $(STAMP)  ## the SRE figures in one run: tuner vs grid, tuned vs default, served vs ORT, generator, open vs closed
	$(BIN)/python benchmarks/sre_suite.py

compare: $(STAMP)  ## FP32 and INT8 variants of both examples side by side on the embedded Triton (README tables)
	$(BIN)/python benchmarks/compare_variants.py --repository model_repository

faults: $(STAMP)  ## SIGTERM and kill -9 under load, overload with short deadlines: what callers see, recovery times
	$(BIN)/python benchmarks/faults.py

soak: $(STAMP)  ## 10 minutes at 80% of the measured knee: errors, RSS growth of server and stubs, p99 first vs last minute
	$(BIN)/python benchmarks/soak.py

zoo: $(STAMP)  ## the model zoo (ResNet, ViT, BERT, DistilBERT, LSTM, tabular): export time, parity per size, served vs torch, variants
	$(BIN)/python benchmarks/zoo.py

# The monitoring figures, one benchmark after another in one run: logging overhead and a dead sink
# (monitor_logging.py), drift power and false alarms against Evidently (monitor_drift.py), quality found from late
# labels and the estimate's error (monitor_quality.py); each one present in benchmarks/ runs.
MONITOR_BENCHES := $(wildcard benchmarks/monitor_logging.py benchmarks/monitor_drift.py benchmarks/monitor_quality.py)
monitor-bench: $(STAMP)  ## logging overhead, drift power / false alarms vs Evidently, quality from late labels
	@test -n "$(MONITOR_BENCHES)" || { echo "no monitoring benchmark in benchmarks/" >&2; exit 1; }
	@for bench in $(MONITOR_BENCHES); do echo "== $$bench"; $(BIN)/python $$bench || exit 1; done
