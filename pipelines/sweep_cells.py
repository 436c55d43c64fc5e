"""The cells of a label-efficiency sweep (`sweep`): one classifier trained on a cell's labeled
examples and scored on the sweep's test subset, by the arm's method: fine-tuning (the classify
stage's training), a frozen-body probe, or TF-IDF + logistic regression."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from accelerate import PartialState
from transformers import set_seed

from . import __version__
from .cards import write_card
from .data import stratified_indices
from .runner import describe_hardware, write_record
from .training_args import build_training_args

if TYPE_CHECKING:
    from .sweep import Arm


def labeled_subset_id(indices: list[int]) -> str:
    """A short hash of which labeled examples a cell trained on: equal across arms (and the SetFit
    baseline) for a (budget, seed), so pairing can be checked in results.jsonl."""
    return hashlib.sha256(json.dumps(indices).encode()).hexdigest()[:12]



class CellRunner:
    """Trains and scores the cells of one arm; keeps what cells of the arm share (tokenized test
    split, frozen-probe features) between them."""

    def __init__(self, arm: Arm, train, test, label_names: list[str], state: PartialState, work_dir: Path):
        self.arm, self.train, self.test, self.label_names = arm, train, test, label_names
        self.state, self.work_dir = state, work_dir
        self._tokenizer = self._test_tok = None
        self._features: dict[int, np.ndarray] = {}
        self._test_features = None

    def run(self, per_class: int, seed: int) -> dict:
        started = time.time()
        indices = stratified_indices(self.train["label"], per_class, seed)
        method = getattr(self, f"_{self.arm.method}")
        with _library_progress_bars_off():
            predicted, train_seconds, training = method(indices, per_class, seed)
        from .metrics import classification_metrics

        scores = classification_metrics().compute(predictions=predicted, references=list(self.test["label"]))
        return {"arm": self.arm.name, "method": self.arm.method, "arm_fingerprint": self.arm.fingerprint,
                "examples_per_class": per_class, "train_examples": len(indices), "seed": seed,
                # Which labeled examples: equal across arms for a (budget, seed), so pairing is checkable.
                "labeled_subset": labeled_subset_id(indices),
                "accuracy": scores["accuracy"], "f1_macro": scores["f1_macro"], "test_examples": len(self.test),
                "train_seconds": round(train_seconds, 2), "cell_seconds": round(time.time() - started, 2), **training}

    # -- finetune: the classify stage's training, without saving a stage folder
    def _finetune(self, indices, per_class, seed):
        from .stages.classify import build_classifier, classifier_tokenizer, fit_and_test, save_classifier, tokenize

        cfg = replace(self.arm.classify, examples_per_class=per_class)
        where = f"{self.arm.recipe.path}: classify"
        if self._tokenizer is None:
            self._tokenizer = classifier_tokenizer(cfg, where)
            self._test_tok = tokenize(self.test, self._tokenizer, cfg.max_length, "test examples")
        train_tok = tokenize(self.train.select(indices), self._tokenizer, cfg.max_length, "labeled examples")
        set_seed(seed)
        model = build_classifier(cfg, self._tokenizer, self.label_names, where)
        cell_dir = self.work_dir / f"{self.arm.name}-{per_class}-{seed}"
        # Cells are short: no checkpoints to resume from (a crashed cell is re-run; with a dev split,
        # weights-only ones per epoch to keep the best); one progress bar is the sweep's.
        result = fit_and_test(cfg, model, self._tokenizer, train_tok, self._test_tok, seed, str(cell_dir),
                              quiet=True, save_strategy="no", disable_tqdm=True)
        if self.arm.recipe.config.sweep.save_models and self.state.is_main_process:
            folder = self.work_dir.parent / "models" / cell_dir.name
            saved = save_classifier(result["model"], self._tokenizer, self.label_names, folder)
            self._complete_model_folder(folder, saved, cfg, result["metrics"], len(indices), seed)
        if self.state.is_main_process:
            shutil.rmtree(cell_dir, ignore_errors=True)
        metrics = result["metrics"]
        return result["predictions"], metrics["train_runtime"], {k: metrics[k] for k in ("dev_examples", "chosen_epoch")}

    def _complete_model_folder(self, folder: Path, model, cfg, scores: dict, train_examples: int, seed: int) -> None:
        """A kept cell's classifier gets what a classify stage's folder has (metrics.json, the
        resolved recipe of the cell, the card), so `lm-transfer publish` takes it like any model."""
        resolved = copy.deepcopy(self.arm.recipe.resolved)
        name = f"{resolved['run']['name']}-{folder.name}"
        resolved["run"].update(name=name, seed=seed)
        resolved["classify"].update(output_dir=str(folder), examples_per_class=cfg.examples_per_class)
        resolved["classify"]["data"]["max_test_examples"] = self.arm.recipe.config.sweep.test_examples
        metrics = {**scores, "train_examples": train_examples, "test_examples": len(self.test),
                   "labels": self.label_names, "examples_per_class": cfg.examples_per_class,
                   "parameters": sum(p.numel() for p in model.parameters()),
                   "hardware": describe_hardware(self.state),
                   "lm_transfer": {"stage": "classify", "config_fingerprint": self.arm.fingerprint,
                                   "recipe": self.arm.recipe.path, "version": __version__,
                                   "sweep_cell": {"arm": self.arm.name, "examples_per_class": cfg.examples_per_class,
                                                  "seed": seed}}}
        write_record(folder, metrics, resolved)
        write_card(folder, "classify", self.arm.recipe.path, resolved, metrics)

    # -- probe: frozen body, pooled features, logistic regression
    def _probe(self, indices, per_class, seed):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train_x = self._probe_features(indices)
        started = time.time()
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(train_x, np.asarray(self.train["label"])[indices])
        return probe.predict(self._test_features), time.time() - started, {}

    def _probe_features(self, indices) -> np.ndarray:
        from .features import pooled_features
        from .stages.classify import build_classifier, classifier_tokenizer

        cfg = self.arm.classify
        if self._tokenizer is None:
            where = f"{self.arm.recipe.path}: classify"
            self._tokenizer = classifier_tokenizer(cfg, where)
            set_seed(self.arm.recipe.config.run.seed)  # a random_init probe body is reproducible
            self._model = build_classifier(replace(cfg, peft=None), self._tokenizer, self.label_names, where)
            self._model.to(self.state.device)
            self._bf16 = build_training_args(cfg.training, str(self.work_dir)).bf16
            self._test_features = pooled_features(self._model, self._tokenizer, list(self.test["text"]),
                                                  cfg.max_length, bf16=self._bf16)
        missing = [i for i in indices if i not in self._features]
        if missing:
            found = pooled_features(self._model, self._tokenizer, list(self.train.select(missing)["text"]),
                                    cfg.max_length, bf16=self._bf16, progress=False)
            self._features.update(zip(missing, found))
        return np.stack([self._features[i] for i in indices])

    # -- tfidf: the classical baseline, features a person designed
    def _tfidf(self, indices, per_class, seed):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        started = time.time()
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=2000))
        subset = self.train.select(indices)
        model.fit(list(subset["text"]), list(subset["label"]))
        return model.predict(list(self.test["text"])), time.time() - started, {}


@contextmanager
def _library_progress_bars_off():
    """Cells are many and short: their loading, tokenizing and training bars would bury the
    sweep's own bar."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        datasets.enable_progress_bars()
        hf_logging.enable_progress_bar()
