# Two commands matter: `make run` (simulate a business and run the graph) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Dagster's state (runs, event logs, sensor cursors) lives in .dagster/ of the repository, for
# `make run` and `make ui` alike; dagster.yaml is copied there (DAGSTER_HOME must hold it).
DAGSTER_HOME := $(CURDIR)/.dagster

.PHONY: install run tick test lint ui bench loop presets clean mlflow serve screenshots brief

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "churn-assets needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/churn-assets simulate
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/churn-assets run

# A live demo: the default world's next day lands (today's drop is ingested once the day is over).
tick: install
	$(BIN)/churn-assets simulate --until today

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

lint: install
	$(BIN)/ruff check .

ui: install $(DAGSTER_HOME)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dagster dev

bench: install
	$(BIN)/python -m churn_assets.lab.bench

# The issue's size: 20,000 customers, a 150-day warm-up whose last 6 weeks are a randomized pilot,
# then 26 weekly decision days; a 30-day label horizon (the champion trains before the pilot) and
# a daily budget scaled to the customer base. `make loop LOOP_ARGS="--customers 3000 --days 240
# --steps 12 ..."` runs a smaller one. The report says what ran.
LOOP_ARGS ?= --customers 20000 --days 335 --warmup-days 150 --pilot-days 42 --steps 26 \
	--horizon-days 30 --auc-floor 0.7 --budget 2500
loop: install
	$(BIN)/python -m churn_assets.lab.loop $(LOOP_ARGS) --out docs/loop_experiment.md --force

# The MLflow UI on the project's tracking store (http://127.0.0.1:5000).
mlflow: install
	$(BIN)/churn-assets mlflow

# The scoring API on http://127.0.0.1:8000 (needs CHURN_API_KEY, or use --no-auth by hand).
serve: install
	$(BIN)/churn-assets serve

# The daily briefs on http://127.0.0.1:8765, where the Dagster UI's brief links point.
brief: install
	$(BIN)/churn-assets report --serve

# The latest brief checked in headless Chromium, and PNGs of it in docs/images (after `make run`).
screenshots: install
	$(BIN)/python -m churn_assets.reports.screenshots

# Churn model and CLTV on both simulator presets, against their truth (README, "A sparse business").
presets: install
	$(BIN)/python -m churn_assets.lab.evaluate --preset default --out reports/preset_default.json
	$(BIN)/python -m churn_assets.lab.evaluate --preset sparse-retail --out reports/preset_sparse_retail.json

clean:
	rm -rf data .dagster .tmp_dagster_home_*
