PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format demo demo-vision bench clean

install: $(STAMP)

# Re-install only when pyproject.toml changes; torch is pinned so pip takes the local CPU wheel.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install lint
	$(BIN)/pytest -x -q --durations=15

# The main job on the shipped data: prepare Shakespeare, train llama-tiny for a few minutes on the CPU,
# print validation bits-per-byte and a sample.
demo: install
	$(BIN)/text-lm prepare --out data/shakespeare_bpe
	$(BIN)/text-lm fit -c configs/text/llama-tiny.yaml --trainer.default_root_dir runs/demo
	$(BIN)/python -m text_lm.demo_report runs/demo/llama-tiny

clean:
	rm -rf $(VENV) lightning_logs data/shakespeare_bpe
