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

# pyproject's addopts already has -q: a second -q here would drop pytest's closing "N passed" line.
# Quick loop without the real training runs: $(BIN)/pytest -m "not slow"
test: install lint
	$(BIN)/pytest -x --durations=15

# The main job on the shipped data: prepare Shakespeare, train llama-tiny on a time budget (the YAML's
# trainer.max_time, 5 minutes of training; the learning rate decays to zero at its end), print validation
# bits-per-byte and a sample. Another budget: make demo DEMO_ARGS="--trainer.max_time 00:00:02:00".
demo: install
	$(BIN)/text-lm prepare --out data/shakespeare_bpe
	$(BIN)/text-lm fit -c configs/text/llama-tiny.yaml --trainer.default_root_dir runs/demo $(DEMO_ARGS)
	$(BIN)/python -m text_lm.demo_report runs/demo/llama-tiny

# The vision track end to end on the CPU in at most 15 minutes on 2 cores, whatever else runs there: generate the
# shapes set (val/test folders; training streams fresh scenes), train SigLIP for 4 minutes and the captioner (with
# SigLIP's image tower) for 8 minutes of training time, each learning-rate schedule decaying over its time budget
# (trainer.max_steps -1: the budget is trainer.max_time), then report zero-shot accuracy, caption exact-match, BLEU,
# VQA accuracy, held-out pair recall, the colour/shape probes and generated captions of held-out test images beside
# the true ones. The YAMLs keep step budgets, for reproducible benchmark runs.
DEMO_VISION := runs/demo-vision
demo-vision: install
	$(BIN)/vision-lm make-shapes --out data/shapes
	$(BIN)/vision-lm fit -c configs/vision/siglip-shapes.yaml --trainer.default_root_dir $(DEMO_VISION) \
		--trainer.max_steps -1 --trainer.max_time 00:00:04:00
	$(BIN)/vision-lm fit -c configs/vision/paligemma-shapes.yaml --trainer.default_root_dir $(DEMO_VISION) \
		--trainer.max_steps -1 --trainer.max_time 00:00:08:00 \
		--model.init_args.vision_init_from $$(ls -t $(DEMO_VISION)/siglip-tiny/version_*/checkpoints/last.ckpt | head -1)
	$(BIN)/python -m vision_lm.demo_vision_report --data data/shapes \
		--siglip $(DEMO_VISION)/siglip-tiny --captioner $(DEMO_VISION)/paligemma-tiny

clean:
	rm -rf $(VENV) lightning_logs data/shakespeare_bpe
