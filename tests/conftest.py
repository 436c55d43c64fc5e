"""Shared fixtures: a small synthetic topic dataset on disk (Hub layout: train/test files), and
tiny recipes that run every stage in seconds."""

import json
import os
import random
from pathlib import Path

import pytest
import yaml

# One thread per test process (and its subprocesses): the models here are tiny, and torch's worker
# threads spin while they wait, so with another process busy on the CPU two test files took 834 s
# instead of ~40 s (measured); with one thread the suite is as fast alone and stays fast shared.
os.environ["OMP_NUM_THREADS"] = "1"
import torch  # noqa: E402

torch.set_num_threads(1)


TOPICS = {
    "sport": "match goal team player coach season league score win cup striker keeper referee fans".split(),
    "tech": "software chip computer phone network data code internet device screen battery app server".split(),
    "food": "recipe bread cheese soup kitchen flavour dinner sauce oven garlic butter salad spice chef".split(),
}
FILLER = "the a of and to in is was it that on for with as by at from this be has said will new year".split()


def _document(rng: random.Random, topic: str) -> str:
    words = [rng.choice(TOPICS[topic]) if rng.random() < 0.35 else rng.choice(FILLER) for _ in range(rng.randint(25, 60))]
    return " ".join(words).capitalize() + "."


def write_topic_dataset(folder: Path, per_class_train: int = 40, per_class_test: int = 15, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", per_class_train), ("test", per_class_test)):
        rows = [{"text": _document(rng, t), "label": t} for t in TOPICS for _ in range(count)]
        rng.shuffle(rows)
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


@pytest.fixture(scope="session")
def topic_data(tmp_path_factory) -> Path:
    return write_topic_dataset(tmp_path_factory.mktemp("data") / "topics")


def tiny_recipe(data: Path, out: Path, backbone: str = "awd_lstm") -> dict:
    """All four stages, sized to run in well under a minute on 2 CPU cores."""
    # initializer_range 1.0 (default 0.3, paper 0.1): with Adam, a tiny LSTM starting from 0.1-scale embeddings
    # sits on its unigram plateau for longer than a test can wait (measured: perplexity 27 vs 8).
    model = ({"backbone": "awd_lstm", "config": {"embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
                                                 "initializer_range": 1.0}}
             if backbone == "awd_lstm" else
             {"backbone": "transformer", "model_type": "llama",
              "config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "num_key_value_heads": 2, "max_position_embeddings": 64}})
    lm_training = {"num_train_epochs": 10, "learning_rate": 1e-2, "per_device_train_batch_size": 16,
                   "logging_steps": 1, "save_strategy": "no", "disable_tqdm": True, "adam_beta1": 0.7, "adam_beta2": 0.99}
    return {
        "run": {"name": "tiny", "output_dir": str(out), "seed": 0,
                "stages": ["tokenizer", "pretrain", "lm_finetune", "classify"]},
        "data": {"path": str(data), "text_column": "text", "label_column": "label"},
        "tokenizer": {"output_dir": "${run.output_dir}/tokenizer", "data": "${data}", "vocab_size": 300},
        "pretrain": {"output_dir": "${run.output_dir}/pretrain", "data": "${data}", "block_size": 32,
                     "model": {**model, "tokenizer": "${tokenizer.output_dir}"}, "training": lm_training},
        "lm_finetune": {"output_dir": "${run.output_dir}/lm_finetune", "init_from": "${pretrain.output_dir}",
                        "data": "${data}", "block_size": 32,
                        "training": {**lm_training, "num_train_epochs": 1, "learning_rate": 3e-3,
                                     "discriminative_lr_factor": 2.6, "slanted_triangular_lr": True}},
        "classify": {"output_dir": "${run.output_dir}/classifier", "init_from": "${lm_finetune.output_dir}",
                     "data": "${data}", "examples_per_class": 8, "max_length": 64,
                     "training": {"num_train_epochs": 6, "learning_rate": 1e-2, "per_device_train_batch_size": 8,
                                  "save_strategy": "no", "disable_tqdm": True, "discriminative_lr_factor": 2.6,
                                  "slanted_triangular_lr": True, "gradual_unfreezing": True,
                                  "unfreeze_every_steps": 3}},
    }


@pytest.fixture
def shipped_recipes_without_data(monkeypatch):
    """Shipped recipes read ../shared/data, which a user's clone does not have (and tests never need):
    their local-path checks are skipped, everything else about them is still checked."""
    monkeypatch.setattr("pipelines.recipe_checks._check_local_path", lambda *a: None)


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


# The awd_run fixture's card section: a recipe that reuses its folders gives the same, since a run or
# sweep that finds a stage current re-renders its card from the recipe's card section.
TINY_CARD = {"license": "mit", "tags": ["topics"], "classifier_tags": ["topic-classification"],
             "citations": ["@misc{topic-texts,\n  title = {Topic texts for tests}\n}"]}


@pytest.fixture(scope="session")
def awd_run(tmp_path_factory, topic_data):
    """A tiny all-stages AWD-LSTM run through the CLI, shared by the tests that read its outputs."""
    from pipelines.cli import main

    root = tmp_path_factory.mktemp("awd")
    recipe = tiny_recipe(topic_data, root / "run")
    recipe["card"] = TINY_CARD
    recipe = write_recipe(root / "recipe.yaml", recipe)
    assert main(["run", str(recipe)]) == 0
    return root, recipe
