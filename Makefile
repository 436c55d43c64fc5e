# lm-transfer: every user-facing command. `make demo` and `make test` set themselves up.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
RECIPE ?= recipes/demo/bbc.yaml
ARGS   ?=
# One process by default; e.g. ACCELERATE_CONFIG=recipes/accelerate/cpu_2proc.yaml for two CPU processes.
ACCELERATE_CONFIG ?= recipes/accelerate/single.yaml
# accelerate launch gives each CPU process ONE thread unless told otherwise (measured: half the
# speed of a plain run on 2 cores); split the cores between the config's processes instead.
PROCESSES   := $(shell awk '/^num_processes:/ {print $$2}' $(ACCELERATE_CONFIG))
CPU_THREADS ?= $(shell n=$$(( $$(nproc) / $(or $(PROCESSES),1) )); echo $$(( n > 0 ? n : 1 )))
# With more than one process, accelerate's launcher answers a process that stops on a user's mistake
# with a traceback of its own: check the recipe (and its data) in one process first.
CHECK_FIRST = $(if $(filter-out 1,$(or $(PROCESSES),1)),$(BIN)/lm-transfer validate $(1) $(foreach a,$(ARGS),--set $(a)) >/dev/null &&)
LAUNCH := $(BIN)/accelerate launch --config_file $(ACCELERATE_CONFIG) --num_cpu_threads_per_process $(CPU_THREADS) -m pipelines

WARM_IMPORTS = import pipelines.runner, pipelines.sweep, pipelines.predict, pipelines.embed, pipelines.publish, \
               pipelines.stages.lm, pipelines.stages.classify, pipelines.stages.tokenizer, pipelines.stages.embed, \
               transformers; transformers.LlamaForCausalLM, transformers.Trainer, transformers.pipeline

.PHONY: help setup extras demo test bench compare-architectures run pretrain finetune classify embed search label-efficiency train predict publish validate clean

help:
	@echo "make demo                      ULMFiT on BBC News, offline: about 6 minutes on 2 CPU cores with native bf16, 9 without"
	@echo "make test                      the test suite"
	@echo "make bench                     Trainer vs a hand-written loop, tokens/s per stage, 1 vs 2 processes, corpus scale -> docs/results/bench.md"
	@echo "make compare-architectures     AWD-LSTM vs Llama against context length -> docs/results/architectures/"
	@echo "make run RECIPE=... ARGS=...   all stages of a recipe under accelerate launch"
	@echo "make pretrain|finetune|classify RECIPE=...   one stage"
	@echo "make label-efficiency RECIPE=... ARGS=...   the recipe's label-efficiency sweep (summary.md, curve.png)"
	@echo "make train DATA=my_labels.csv  a classifier from your labels (text,label CSV), the method chosen for the data"
	@echo "make predict RUN=<classifier folder> DATA=<file or folder> [OUTPUT=predictions.csv]"
	@echo "                               label a file's texts (accuracy and macro-F1 when it has labels)"
	@echo "make embed RECIPE=...          the recipe's embed stage: its texts as vectors (e.g. runs/demo-bbc/embeddings)"
	@echo "make embed RUN=<folder> DATA=<file or folder> [EMBEDDINGS=embeddings]   any model folder or checkpoint"
	@echo "make search INDEX=<embeddings folder> QUERY='some text'   the nearest texts, with cosine similarity"
	@echo "make publish RUN=<folder> REPO_ID=user/name [BASE_MODEL=user/lm] [REVISION=branch] [PRIVATE=1] [WITH_CODE=1] [DRY_RUN=1]"
	@echo "                               upload a model's folder to the Hub (WITH_CODE=1: with its modeling code)"
	@echo "make validate [RECIPES=...]    check recipes, their data and models (default: every shipped recipe); train nothing"

$(BIN)/lm-transfer: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch comes first, so the package's torch requirement is already met.
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile "torch==2.13.0" || $(BIN)/pip install -q --no-compile "torch>=2.4,<2.15"
	$(BIN)/pip install -q --no-compile -e ".[demo]"
	# Bytecode for what the commands import, written now, while site-packages is writable: where Python
	# cannot write it later (PYTHONDONTWRITEBYTECODE=1, a read-only install) every command would
	# recompile torch and transformers (measured: 17-20 CPU-s instead of 6-7 to import the package).
	# This costs ~29 s on 2 cores; pip compiling every module of every package (no --no-compile), ~50 s.
	$(BIN)/python -c "import sys; sys.dont_write_bytecode = False; $(WARM_IMPORTS)"
	touch $@

setup: $(BIN)/lm-transfer

# What the tests, the benchmarks and the sweep's setfit / word-vector arms need besides (not the demo:
# it starts sooner without them).
$(VENV)/.extras: $(BIN)/lm-transfer
	$(BIN)/pip install -q --no-compile -e ".[demo,test]"
	touch $@

extras: $(VENV)/.extras

demo: setup
	$(call CHECK_FIRST,recipes/demo/bbc.yaml) $(LAUNCH) run recipes/demo/bbc.yaml $(ARGS)

# A worker per core (the tests use one thread each): 76 s instead of 131 s on 2 cores.
test: extras
	$(BIN)/python -m pytest tests -q -n auto $(PYTEST_ARGS)

# A benchmark, never a test (about 25 minutes on 2 CPU cores; run nothing else meanwhile).
bench: extras
	$(BIN)/python benchmarks/bench.py $(ARGS)

# A benchmark: trains recipes/imdb/awd_lstm.yaml and small.yaml when not built (reads ../shared/data).
compare-architectures: extras
	$(BIN)/python benchmarks/architectures.py $(ARGS)

run: setup
	$(call CHECK_FIRST,$(RECIPE)) $(LAUNCH) run $(RECIPE) $(ARGS)

pretrain: setup
	$(call CHECK_FIRST,$(RECIPE)) $(LAUNCH) run $(RECIPE) --stage pretrain $(ARGS)

finetune: setup
	$(call CHECK_FIRST,$(RECIPE)) $(LAUNCH) run $(RECIPE) --stage lm_finetune $(ARGS)

classify: setup
	$(call CHECK_FIRST,$(RECIPE)) $(LAUNCH) run $(RECIPE) --stage classify $(ARGS)

label-efficiency: extras
	$(call CHECK_FIRST,$(RECIPE)) $(LAUNCH) sweep $(RECIPE) $(ARGS)

# A classifier from a CSV of labels (recipes/few_labels.yaml: the method chosen for the data).
TRAIN_RECIPE ?= recipes/few_labels.yaml
train: extras
	@test -n "$(DATA)" || { echo "usage: make train DATA=my_labels.csv [ARGS='train.arm=setfit run.output_dir=runs/mine']"; exit 2; }
	$(BIN)/lm-transfer train $(TRAIN_RECIPE) data.path=$(DATA) $(ARGS)

# With RUN (a model folder or checkpoint) and DATA: those texts; else the recipe's embed stage.
EMBEDDINGS ?= embeddings
embed: setup
	$(if $(RUN),$(BIN)/lm-transfer embed $(RUN) --data $(DATA) --output $(EMBEDDINGS) $(ARGS),$(call CHECK_FIRST,$(RECIPE)) $(LAUNCH) run $(RECIPE) --stage embed $(ARGS))

search: setup
	@test -n "$(INDEX)" -a -n "$(QUERY)" || { echo "usage: make search INDEX=runs/demo-bbc/embeddings QUERY='oil prices rise' [ARGS='-k 10']"; exit 2; }
	$(BIN)/lm-transfer search $(INDEX) "$(QUERY)" $(ARGS)

OUTPUT ?= predictions.csv
predict: setup
	@test -n "$(RUN)" -a -n "$(DATA)" || { echo "usage: make predict RUN=runs/demo-bbc/classifier DATA=mydata.csv [OUTPUT=predictions.csv] [ARGS='--split test']"; exit 2; }
	$(BIN)/lm-transfer predict $(RUN) $(DATA) --output $(OUTPUT) $(ARGS)

PUBLISH_FLAGS = $(if $(BASE_MODEL),--base-model $(BASE_MODEL)) $(if $(REVISION),--revision $(REVISION)) \
                $(if $(PRIVATE),--private) $(if $(WITH_CODE),--with-code) $(if $(DRY_RUN),--dry-run)
publish: setup
	@test -n "$(RUN)" -a -n "$(REPO_ID)" || { echo "usage: make publish RUN=runs/demo-bbc/classifier REPO_ID=user/name [BASE_MODEL=user/lm] [REVISION=branch] [PRIVATE=1] [WITH_CODE=1] [DRY_RUN=1]"; exit 2; }
	$(BIN)/lm-transfer publish $(RUN) --repo-id $(REPO_ID) $(strip $(PUBLISH_FLAGS))

# Recipes that name Hub datasets or models (recipes/imdb/ulmfit.yaml) need the Hub, or its cache, to check.
RECIPES ?= $(wildcard recipes/demo/*.yaml recipes/imdb/*.yaml recipes/bbc/*.yaml)
validate: setup
	$(BIN)/lm-transfer validate $(RECIPES)

clean:
	rm -rf runs
