"""Everything about a recipe's inputs that can be checked before the first training step, for
`run`, `sweep` and `validate` alike: that output folders can be written, that the models stages
start from exist and are of a fitting kind, that `model.config` names only fields of its config
class, and each stage's data read as the stage will read it (splits, columns, labels, class counts,
encoding). Each failure is one line naming the recipe key or file."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from pathlib import Path

from huggingface_hub import is_offline_mode
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM,
                          AutoModelForSequenceClassification, AutoTokenizer)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .backbones import resolve_checkpoint, tokenizer_source
from .config import ClassifyStage, EmbedStage, LMStage, LoadedRecipe, ModelConfig, TokenizerStage
from .errors import DataError, RecipeError, first_line
from .models.awd_lstm import AwdLstmConfig
from .outputs import check_output_folder, check_stage_output
from .paths import data_paths, same_folder
from .sources import source_name
from .training_args import check_training_args


def check_inputs(recipe: LoadedRecipe, stages: list[str] | None = None, read: dict | None = None) -> list[str]:
    """Checks `stages` (default: all of run.stages) and returns what was read, one line a stage.
    `read`: what earlier checks of the same command read (a dataset several stages share is read once)."""
    stages = recipe.config.run.stages if stages is None else stages
    read = {} if read is None else read
    for name in stages:
        check_stage_setup(recipe, name)
    lines = [line for name in stages if (line := check_stage_data(recipe, name, read))]
    return lines + check_test_texts_unseen(recipe, stages, read)


# A share of the test texts found in a language model's training text above which it is a leak (a file
# that holds the test texts), not the duplicates real datasets have (BBC News: 32 of the demo's 443
# carved test articles are also among its training articles; IMDb: 6 of 2,000 test reviews).
LEAK_SHARE = 0.25


def check_test_texts_unseen(recipe: LoadedRecipe, stages: list[str], read: dict | None = None) -> list[str]:
    """Compares texts, not files: the classifier's test texts must not be in the text a tokenizer or
    language-model stage trains on, whichever file or split it comes from (a copy of the data, a
    file of unlabeled text that holds them). Above LEAK_SHARE it fails; a few (duplicates within a
    dataset) are reported in one line."""
    from .data import classification_splits, lm_text_splits

    if recipe.config.classify is None or "classify" not in recipe.config.run.stages:
        return []
    trainers = [n for n in stages if isinstance(recipe.stage(n), (TokenizerStage, LMStage))
                and not getattr(recipe.stage(n), "from_checkpoint", None) and not recipe.stage(n).data.streaming]
    if not trainers:
        return []
    read, seed = {} if read is None else read, recipe.config.run.seed
    data = recipe.config.classify.data
    if (key := _texts_key("test", data, seed)) not in read:  # (what check_stage_data read, or read now)
        read[key] = {_text_key(t) for t in classification_splits(data, None, seed)[1]["text"]}
    test, lines = read[key], []
    for name in trainers:
        data = recipe.stage(name).data
        if (key := _texts_key("train", data, seed)) not in read:
            train = lm_text_splits(data, seed)[0]
            read[key] = {_text_key(t) for t in train[train.column_names[0]]}
        found = len(test & read[key])
        if found > LEAK_SHARE * len(test):
            raise DataError(f"{recipe.path}: {name}.data: {found:,} of the classifier's {len(test):,} test texts "
                            f"are in the text {name} trains on ({source_name(data)}): the classifier would be "
                            "scored on text its model was trained on; remove them from that data, or test on "
                            "other texts")
        if found:
            lines.append(f"[{name}] {found:,} of the classifier's {len(test):,} test texts also appear in its "
                         "training text (duplicates within the data?)")
    return list(dict.fromkeys(lines))


def _texts_key(split: str, data, seed: int) -> tuple:
    return ("texts", split, json.dumps(dataclasses.asdict(data), sort_keys=True), seed)


def _text_key(text) -> bytes:
    """A text as compared for leakage, whitespace and case aside (hashed: an LM corpus can be large)."""
    return hashlib.blake2b(" ".join(str(text).split()).lower().encode(), digest_size=12).digest()


def check_sweep_arms(plan, read: dict | None = None) -> list[str]:
    """Every arm's language-model stages (setup and data) and the model its classifier starts from,
    before any arm trains; returns what was read."""
    check_output_folder(f"{plan.recipe.path}: sweep.output_dir", str(plan.output_dir), data_paths(plan.recipe))
    read = {} if read is None else read
    lines = []
    for arm in plan.arms_with_students:
        if arm.members:  # (an ensemble trains nothing: its members, checked as arms, do)
            continue
        stages = arm.recipe.config.run.stages
        for name in [*stages, *(["classify"] if arm.method.uses_model else [])]:
            check_stage_setup(arm.recipe, name)
        lines += [line for name in stages if (line := check_stage_data(arm.recipe, name, read))]
    return list(dict.fromkeys(lines))


def built_by(recipe: LoadedRecipe) -> set[str]:
    """Folders this recipe's stages write: a later stage may start from them before they exist."""
    return {same_folder(recipe.stage(name).output_dir) for name in recipe.config.run.stages}


def check_stage_setup(recipe: LoadedRecipe, name: str) -> None:
    """The stage's output folder, the models and tokenizers it starts from, its model.config keys."""
    stage, where = recipe.stage(name), f"{recipe.path}: {name}"
    check_stage_output(recipe, name, data_paths(recipe))
    built = built_by(recipe)
    if isinstance(stage, TokenizerStage):
        _check_model(f"{where}.from_checkpoint", stage.from_checkpoint, "tokenizer", built)
        return
    if isinstance(stage, EmbedStage):
        _check_model(f"{where}.init_from", stage.init_from, "encoder", built)
        _check_model(f"{where}.init_from", stage.init_from, "tokenizer", built)
        return
    check_training_args(stage.training, where=f"{where}.training")
    lm = isinstance(stage, LMStage)
    kind = "language model" if lm else "body"
    _check_model(f"{where}.init_from", stage.init_from, kind, built)
    if stage.model.backbone == "checkpoint" and stage.init_from is None:
        _check_model(f"{where}.model.checkpoint", stage.model.checkpoint, kind, built)
    key, source = tokenizer_source(stage, where)
    _check_model(f"{where}.{key}", source, "tokenizer", built)
    if stage.init_from is None:
        check_model_config_keys(f"{where}.model", stage.model)


def check_stage_data(recipe: LoadedRecipe, name: str, read: dict) -> str | None:
    """Reads the stage's data as the stage will (the same functions), so a missing split or column,
    an unseen test label or too few examples of a class fail now; returns what was read. A dataset
    already in `read` (data config -> what it held) is not read again."""
    from .data import classification_splits, lm_text_splits

    stage, seed = recipe.stage(name), recipe.config.run.seed
    if isinstance(stage, TokenizerStage) and stage.from_checkpoint:
        return None
    if isinstance(stage, EmbedStage):
        return _check_embed_data(recipe, name, read)
    classify = isinstance(stage, ClassifyStage)
    data = dataclasses.asdict(stage.data)
    key = json.dumps([classify, data, seed, stage.examples_per_class if classify else None], sort_keys=True)
    if key not in read:
        where = f"{recipe.path}: {name}"
        try:
            if classify:
                train, test, labels = classification_splits(stage.data, stage.examples_per_class, seed)
                read[_texts_key("test", stage.data, seed)] = {_text_key(t) for t in test["text"]}
                per_class = f", {stage.examples_per_class} per class" if stage.examples_per_class else ""
                read[key] = (f"{len(train):,} labeled examples{per_class}, {len(labels)} classes; "
                                   f"{len(test):,} test examples")
            else:
                train, held_out = lm_text_splits(stage.data, seed)
                if stage.data.streaming:  # counting would read the whole stream
                    next(iter(train))
                    read[key] = "streamed (training and held-out text read as they are used)"
                else:
                    read[_texts_key("train", stage.data, seed)] = {_text_key(t) for t in train[train.column_names[0]]}
                    read[key] = f"{len(train):,} training texts, {len(held_out):,} held out for perplexity"
        except DataError as err:
            raise DataError(f"{where}: {err}") from None
    return f"[{name}] data {source_name(stage.data)}: {read[key]}"


def _check_embed_data(recipe: LoadedRecipe, name: str, read: dict) -> str:
    from .data import read_split

    stage = recipe.stage(name)
    split = stage.split_to_read()
    key = json.dumps(["embed", dataclasses.asdict(stage.data), split], sort_keys=True)
    if key not in read:
        try:
            what, ds = read_split(stage.data, split, choose=f"{name}.split")
        except DataError as err:
            raise DataError(f"{recipe.path}: {name}: {err}") from None
        read[key] = f"{len(ds):,} texts ({what})"
    return f"[{name}] data {source_name(stage.data)}: {read[key]}"


_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model")


def _check_model(where: str, value: str | None, kind: str, built: set[str]) -> None:
    """`value` (a folder, Hub id or packaged checkpoint) holds a model of `kind` (language model,
    body, tokenizer); a folder an earlier stage of the recipe writes passes."""
    if value is None or same_folder(value) in built:
        return
    path = resolve_checkpoint(value)
    local = os.path.isdir(path)
    if not local and value.startswith((".", "/", "~")):
        what = "a file, not a model folder" if os.path.isfile(path) else "not there"
        raise RecipeError(f"{where}: '{value}' is {what}; give a stage's output folder or a Hub model id")
    if local and kind != "tokenizer" and not os.path.isfile(os.path.join(path, "config.json")):
        raise RecipeError(f"{where}: '{value}' is not a model folder (no config.json); give a stage's output "
                          "folder (e.g. runs/demo-bbc/pretrain) or a Hub model id")
    if local and kind != "tokenizer" and not any(next(Path(path).glob(p), None) for p in _WEIGHTS):
        raise RecipeError(f"{where}: '{value}' has a config.json but no weights ({', '.join(_WEIGHTS)})")
    if local and kind == "tokenizer" and not any((Path(path) / f).is_file() for f in _TOKENIZER_FILES):
        raise RecipeError(f"{where}: '{value}' has no tokenizer ({', '.join(_TOKENIZER_FILES)}); "
                          "set model.tokenizer to a folder that has one (e.g. ${tokenizer.output_dir})")
    try:
        if kind == "tokenizer":
            AutoTokenizer.from_pretrained(path)
            return
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        if local:
            raise RecipeError(f"{where}: cannot load '{value}': {first_line(err)}") from None
        why = "offline mode: HF_HUB_OFFLINE=1" if is_offline_mode() else first_line(err)[:160]
        raise RecipeError(f"{where}: '{value}' is not a local folder (looked in {os.path.abspath(value)}) and "
                          f"could not be loaded from the Hub ({why}); download it to a folder and give that "
                          "folder, or give another model") from None
    mappings = {"language model": [AutoModelForCausalLM, AutoModelForMaskedLM], "body": [AutoModel],
                "encoder": [AutoModel, AutoModelForSequenceClassification]}[kind]
    if not any(type(config) in auto._model_mapping for auto in mappings):
        wanted = "a causal or masked language model" if kind == "language model" else "a model with a text body"
        raise RecipeError(f"{where}: '{value}' is a {config.model_type} model, not {wanted}")


def check_model_config_keys(where: str, model: ModelConfig) -> None:
    """model.config keys must be fields of the backbone's config class: transformers configs keep
    any unknown keyword as an attribute, so a misspelt size would be ignored silently."""
    if model.backbone == "awd_lstm":
        config_class = AwdLstmConfig
    elif model.backbone == "transformer":
        if model.model_type not in CONFIG_MAPPING:
            close = ", ".join(difflib.get_close_matches(model.model_type, list(CONFIG_MAPPING.keys()), n=3))
            raise RecipeError(f"{where}.model_type: '{model.model_type}' is not a transformers model type"
                              f"{f' (did you mean {close}?)' if close else ''}")
        config_class = CONFIG_MAPPING[model.model_type]
    else:
        return
    known = {f.name for f in dataclasses.fields(config_class)} if dataclasses.is_dataclass(config_class) else set()
    default = vars(config_class())
    known |= set(default) | set(getattr(config_class, "attribute_map", {}))
    for key, value in model.config.items():
        if key not in known and not _changes_a_field(config_class, default, key, value):
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise RecipeError(f"{where}.config.{key}: not a field of {config_class.__name__}"
                              f"{f' (did you mean {close[0]}?)' if close else ''}")


def _changes_a_field(config_class, default: dict, key: str, value) -> bool:
    """A keyword the config class takes without a field of its name (Llama's rope_theta becomes
    rope_parameters, attn_implementation _attn_implementation) changes another attribute; an unknown
    one is only kept as an attribute of its own name."""
    try:
        built = vars(config_class(**{key: value}))
    except Exception:  # (a value the class refuses: the stage's own build says why)
        return True
    return any(built.get(name) != default_value for name, default_value in default.items())
