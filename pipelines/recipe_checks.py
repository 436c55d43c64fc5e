"""What a recipe says that can be checked without reading its data or models: stage names, value
ranges, choices, local paths, card metadata, and that the classifier's test split is no split a
stage trains on; and that it reads no environment variable. Each failure is one line naming the
recipe file and the key. (Data and models are checked next, by `preflight`.)"""

from __future__ import annotations

import os
import re

from omegaconf import OmegaConf

from .config import (POOLINGS, STAGE_KINDS, ClassifyStage, DataConfig, EmbedStage, LMStage, LoadedRecipe, Recipe,
                     TokenizerStage)
from .errors import RecipeError
from .paths import data_file_path, same_folder, spelled_local
from .training_section import check_training_section


def check_recipe(loaded: LoadedRecipe) -> None:
    """Every rule about the recipe's values, each failure one line naming the file and the key."""
    path, recipe = loaded.path, loaded.config
    stages = recipe.run.stages
    for name in stages:
        if name not in STAGE_KINDS:
            raise RecipeError(f"{path}: run.stages: unknown stage '{name}' (known: {', '.join(STAGE_KINDS)})")
        if getattr(recipe, name) is None:
            raise RecipeError(f"{path}: run.stages names '{name}' but the recipe has no '{name}' section")
    if len(set(stages)) != len(stages):
        raise RecipeError(f"{path}: run.stages: a stage is listed twice")
    if recipe.card.license is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", recipe.card.license):
        raise RecipeError(f"{path}: card.license: '{recipe.card.license}' is not a Hub license id "
                          "(lower case, e.g. mit, apache-2.0, cc-by-4.0, other)")
    for index, entry in enumerate(recipe.card.citations):
        if not re.match(r"\s*@\w+\s*\{", entry):
            raise RecipeError(f"{path}: card.citations[{index}]: not a BibTeX entry (@type{{key, ...}})")
    if not 0 <= recipe.run.seed < 2**32:  # (numpy's seeds)
        raise RecipeError(f"{path}: run.seed: must be between 0 and 2**32 - 1 (got {recipe.run.seed})")
    outputs = {same_folder(getattr(recipe, name).output_dir) for name in stages}
    for name in stages:
        stage = getattr(recipe, name)
        if hasattr(stage, "training"):
            check_training_section(stage.training, where=f"{path}: {name}.training")
        check_data(path, f"{name}.data", stage.data, labeled=isinstance(stage, ClassifyStage))
        if isinstance(stage, ClassifyStage):
            _check_no_leak(path, recipe, name)
        if isinstance(stage, (LMStage, ClassifyStage)):
            _check_choice(path, f"{name}.model.backbone", stage.model.backbone, ("awd_lstm", "transformer", "checkpoint"))
            if stage.init_from is None:
                if stage.model.backbone == "transformer" and not stage.model.model_type:
                    raise RecipeError(f"{path}: {name}.model.model_type: required for backbone 'transformer'")
                if stage.model.backbone == "checkpoint" and not stage.model.checkpoint:
                    raise RecipeError(f"{path}: {name}.model.checkpoint: required for backbone 'checkpoint'")
            for key, value in (("init_from", stage.init_from), ("model.tokenizer", stage.model.tokenizer),
                               ("model.checkpoint", stage.model.checkpoint)):
                if value is not None and same_folder(value) not in outputs:
                    _check_local_path(path, f"{name}.{key}", value)
        if isinstance(stage, LMStage):
            _check_choice(path, f"{name}.objective", stage.objective, ("auto", "causal", "masked"))
            _check_choice(path, f"{name}.direction", stage.direction, ("forward", "backward"))
            if stage.direction == "backward" and stage.objective == "masked":
                raise RecipeError(f"{path}: {name}.direction: a masked LM reads both sides already; backward is "
                                  "for causal LMs")
            _at_least(path, f"{name}.block_size", stage.block_size, 2)
            _fraction(path, f"{name}.mlm_probability", stage.mlm_probability)
        if isinstance(stage, ClassifyStage):
            _check_choice(path, f"{name}.pooling", stage.pooling, POOLINGS)
            if stage.direction is not None:
                _check_choice(path, f"{name}.direction", stage.direction, ("forward", "backward"))
            _fraction(path, f"{name}.dev_fraction", stage.dev_fraction)
            for key in ("examples_per_class", "max_length", "bptt", "head_hidden"):
                _at_least(path, f"{name}.{key}", getattr(stage, key), 1)
            _fraction(path, f"{name}.head_dropout", stage.head_dropout, zero=True)
            if stage.peft is not None:
                _check_choice(path, f"{name}.peft.method", stage.peft.method, ("lora",))
                _at_least(path, f"{name}.peft.r", stage.peft.r, 1)
                _at_least(path, f"{name}.peft.alpha", stage.peft.alpha, 1)
                _fraction(path, f"{name}.peft.dropout", stage.peft.dropout, zero=True)
            if stage.freeze_body and (stage.training.get("gradual_unfreezing") or stage.peft is not None):
                raise RecipeError(f"{path}: {name}.freeze_body: trains the head alone; it cannot be combined "
                                  "with gradual_unfreezing or peft")
        if isinstance(stage, EmbedStage):
            if stage.pooling is not None:
                _check_choice(path, f"{name}.pooling", stage.pooling, POOLINGS)
            for key in ("max_length", "bptt", "batch_size", "max_examples"):
                _at_least(path, f"{name}.{key}", getattr(stage, key), 1)
            if same_folder(stage.init_from) not in outputs:
                _check_local_path(path, f"{name}.init_from", stage.init_from)
        if isinstance(stage, TokenizerStage):
            _check_choice(path, f"{name}.algorithm", stage.algorithm, ("bpe", "unigram"))
            _at_least(path, f"{name}.vocab_size", stage.vocab_size, 16)
            _at_least(path, f"{name}.min_frequency", stage.min_frequency, 1)


def check_train_recipe(loaded: LoadedRecipe):
    """The train section (lm-transfer train) and the data it reads, without reading it; returns the section."""
    path, recipe = loaded.path, loaded.config
    if recipe.train is None:
        raise RecipeError(f"{path}: no train section (see recipes/few_labels.yaml for one)")
    if recipe.sweep is None:
        raise RecipeError(f"{path}: train: its arms are the sweep section's (sweep.checkpoint, sweep.arm_definitions): "
                          "add one (see recipes/few_labels.yaml)")
    if recipe.classify is None:
        raise RecipeError(f"{path}: train: needs a classify section (the classifier's data and length)")
    check_data(path, "classify.data", recipe.classify.data, labeled=True)
    return recipe.train


def check_data(path: str, key: str, data: DataConfig, labeled: bool) -> None:
    """What can be told about a stage's data without reading it: where it is, value ranges."""
    if data.path is None and not data.files:
        raise RecipeError(f"{path}: {key}.path: required (a Hub id, a local folder or file), or {key}.files")
    if data.path is not None:
        _check_local_path(path, f"{key}.path", data.path)
    for split, file in data.files.items():
        if not os.path.isfile(located := data_file_path(data.path, file)):
            raise RecipeError(f"{path}: {key}.files.{split}: no such file '{located}'")
    _fraction(path, f"{key}.validation_fraction", data.validation_fraction)
    _fraction(path, f"{key}.test_fraction", data.test_fraction)
    _at_least(path, f"{key}.max_texts", data.max_texts, 1)
    _at_least(path, f"{key}.max_test_examples", data.max_test_examples, 1)
    if labeled and data.label_column is None:
        raise RecipeError(f"{path}: {key}.label_column: required for classification")
    try:
        "".encode(data.encoding)
    except LookupError:
        raise RecipeError(f"{path}: {key}.encoding: unknown encoding '{data.encoding}' (e.g. utf-8, latin-1, cp1252)") from None


def _check_no_leak(path: str, recipe: Recipe, classify: str) -> None:
    """No stage trains on the classifier's test texts, the language models included: not on its
    test split or file, and, when the test split is carved from train (data.test_fraction), not on
    that train split unless the stage carves it the same way (its `${data}` does)."""
    test = getattr(recipe, classify).data
    if test.test_split is None:
        return
    carved = test.test_fraction is not None
    held_out = _unit(test, test.train_split if carved else test.test_split)
    for name in recipe.run.stages:
        data = getattr(recipe, name).data
        if held_out is None or held_out not in _trained_on(data) or (carved and _carving(data) == _carving(test)):
            continue
        if carved:
            raise RecipeError(f"{path}: {name}.data: trains on the text {classify}'s test split is carved from, without "
                              f"carving the same test split (data.test_fraction {test.test_fraction}, label_column, "
                              f"train_split and test_split as in {classify}.data): it would train on the test texts; "
                              "give it the same keys (e.g. data: ${data})")
        raise RecipeError(f"{path}: {classify}.data.test_split: '{test.test_split}' is text {name} trains on "
                          f"({name}.data.train_split or unlabeled_splits, or the same file): the model would be scored "
                          "on text it trained on; use another split, or data.test_fraction to carve one from train")


def _unit(data: DataConfig, split: str) -> tuple | None:
    """What a split of a dataset is, comparable across stages: a file (by its real path) or a split
    of a folder or Hub dataset; None when the dataset has no such split given."""
    if data.files:
        file = data.files.get(split)
        return ("file", os.path.realpath(data_file_path(data.path, file))) if file else None
    local = os.path.expanduser(data.path)
    if os.path.isfile(local):
        return ("file", os.path.realpath(local)) if split == data.train_split else None
    return ("split", os.path.realpath(local) if os.path.exists(local) else data.path, data.name, split)


def _trained_on(data: DataConfig) -> set[tuple]:
    return {_unit(data, split) for split in [data.train_split, *data.unlabeled_splits]} - {None}


def _carving(data: DataConfig) -> tuple | None:
    if data.test_fraction is None:
        return None
    return data.test_fraction, data.label_column, data.train_split, data.test_split


def _at_least(path, key, value, minimum):
    if value is not None and value < minimum:
        raise RecipeError(f"{path}: {key}: must be at least {minimum} (got {value})")


def _fraction(path, key, value, zero=False):
    """A fraction strictly between 0 and 1 (0 allowed with `zero`); None passes (unset)."""
    if value is not None and not (0 <= value < 1 if zero else 0 < value < 1):
        bounds = "at least 0 and below 1" if zero else "between 0 and 1, exclusive"
        raise RecipeError(f"{path}: {key}: must be {bounds} (got {value})")


def _check_choice(path, key, value, choices):
    if choices is not None and value not in choices:
        raise RecipeError(f"{path}: {key}: '{value}' is not one of {', '.join(choices)}")


def _check_local_path(path, key, value):
    """Values that are spelled as local paths (or name a data file) must exist; anything else may
    be a Hub id."""
    if value and spelled_local(value) and not os.path.exists(os.path.expanduser(value)):
        raise RecipeError(f"{path}: {key}: local path '{value}' does not exist (looked in "
                          f"{os.path.abspath(os.path.expanduser(value))})")


def refuse_environment(raw, path: str) -> None:
    """Recipes may not read environment variables (${oc.env:...}, nested or inside a string, arm
    fragments included): the resolved recipe is written to recipe.yaml and the model cards that
    `publish` uploads, so a token read from the environment would go to the Hub. A resolver named
    by an interpolation (${${name}:X}) may be oc.env: refused too."""
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser
    from omegaconf.grammar_parser import parse

    nodes = [("", OmegaConf.to_container(raw, resolve=False))]  # (key, a value or a node of its parse tree)
    while nodes:
        key, node = nodes.pop()
        if isinstance(node, dict):
            nodes += [(f"{key}.{k}" if key else str(k), v) for k, v in node.items()]
        elif isinstance(node, list):
            nodes += [(f"{key}[{i}]", v) for i, v in enumerate(node)]
        elif isinstance(node, str) and "${" in node:  # (OmegaConf checked its grammar when loading it)
            nodes.append((key, parse(node)))
        elif isinstance(node, OmegaConfGrammarParser.InterpolationResolverContext) and (
                (name := node.resolverName().getText()) == "oc.env" or "${" in name):
            raise RecipeError(f"{path}: {key}: reads an environment variable (${{oc.env:...}}), which recipes "
                              "cannot: the resolved recipe goes into recipe.yaml and the model cards that publish "
                              "uploads; write the value in the recipe or pass it as a key=value override (a Hub "
                              "token comes from HF_TOKEN or `hf auth login` and never belongs in a recipe)")
        elif hasattr(node, "getChildren"):
            nodes += [(key, child) for child in node.getChildren()]
