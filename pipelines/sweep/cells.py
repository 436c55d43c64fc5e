"""One cell of a label-efficiency sweep: the arm's classifier trained on a (budget, seed)'s labeled
examples, by the arm's method (`methods`), self-trained when the arm says so, scored on the sweep's
test subset; the row that goes to results.jsonl."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cards import write_card, write_ensemble_card
from ..ensemble import write_ensemble
from ..data import stratified_indices
from ..metrics import classification_metrics
from ..outputs import remove_output
from ..record import describe_hardware, provenance, write_record
from .arms import Arm
from .cell_method import CellMethod, Fitted
from .self_training import SelfTraining


def labeled_subset_id(indices: list[int]) -> str:
    """A short hash of which labeled examples a cell trained on: equal across arms for a (budget,
    seed), so pairing can be checked in results.jsonl."""
    return hashlib.sha256(json.dumps(indices).encode()).hexdigest()[:12]


def texts_id(texts: list[str]) -> str:
    """A short hash of the texts a cell was scored on: one value for every arm and seed of a sweep."""
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:12]


@dataclass
class CellData:
    train: object  # datasets.Dataset with text, label: the cells' labeled subsets are drawn from it
    test: object  # the sweep's test subset, the same for every cell
    label_names: list[str]
    unlabeled: list[str] | None = None  # the unlabeled splits' texts; None: self-training samples train's

    def __post_init__(self):
        self.train_labels = np.asarray(self.train["label"])
        self.test_texts, self.test_labels = list(self.test["text"]), list(self.test["label"])
        self.test_id = texts_id(self.test_texts)


class CellRunner:
    """Runs the cells of one arm. `methods` holds one method object per arm name, shared by the
    runners of a sweep (a frozen_probe student reuses frozen_probe's encoded texts)."""

    def __init__(self, arm: Arm, data: CellData, state, work_dir: Path, methods: dict[str, CellMethod],
                 scored: dict | None = None):
        self.arm, self.data, self.state, self.work_dir = arm, data, state, work_dir
        # The test probabilities and training seconds of the sweep's finished cells by (arm fingerprint,
        # examples per class, seed): what an ensemble reuses of its members' cells.
        self.scored = {} if scored is None else scored
        self.trained_members: dict[str, Fitted] = {}

        def method_of(of: Arm) -> CellMethod:
            if of.name not in methods:
                methods[of.name] = of.method(of, data.label_names, state, work_dir)
            return methods[of.name]

        self.method = method_of(arm)
        self.members = [method_of(member) for member in arm.members]
        self.self_training = None
        if arm.self_training is not None:
            pool = data.unlabeled if data.unlabeled is not None else list(data.train["text"])
            self.self_training = SelfTraining(arm.self_training, self.method, method_of(arm.student or arm), pool,
                                              pool_is_train=data.unlabeled is None)

    @property
    def everywhere(self) -> bool:
        """Every process runs the cell (a Trainer in it); otherwise the main process alone."""
        if self.members:
            return any(member.everywhere for member in self.members)
        return (self.self_training or self.method).everywhere

    def run(self, per_class: int, seed: int) -> dict:
        started = time.time()
        indices = stratified_indices(self.data.train_labels, per_class, seed)
        labeled = self.data.train.select(indices)
        texts, labels = list(labeled["text"]), list(labeled["label"])
        scored: dict[int, tuple] = {}  # test probabilities by classifier, each computed once

        def test_probabilities(fitted: Fitted) -> np.ndarray:
            key = id(fitted.predict_proba)
            if key not in scored:
                scored[key] = (fitted.predict_proba, fitted.predict_proba(self.data.test_texts))
            return scored[key][1]

        def accuracy(fitted: Fitted) -> float:
            return float(np.mean(np.argmax(test_probabilities(fitted), axis=-1) == self.data.test_labels))

        with _library_progress_bars_off():
            if self.members:
                fitted = self._ensemble(texts, labels, per_class, seed)
            elif self.self_training is not None:
                fitted = self.self_training.fit(texts, labels, seed, indices, accuracy)
            else:
                fitted = self.method.fit(texts, labels, seed)
            predicted = np.argmax(test_probabilities(fitted), axis=-1)
        self.scored[(self.arm.fingerprint, per_class, seed)] = (test_probabilities(fitted), fitted.train_seconds)
        scores = classification_metrics().compute(predictions=predicted, references=self.data.test_labels)
        row = {"arm": self.arm.name, "method": self.arm.method.name, "arm_fingerprint": self.arm.fingerprint,
               "examples_per_class": per_class, "train_examples": len(indices), "seed": seed,
               # Which labeled examples and which test texts: equal across arms (and seeds, for the
               # test), so the pairing is checkable in results.jsonl.
               "labeled_subset": labeled_subset_id(indices), "test_subset": self.data.test_id,
               "accuracy": scores["accuracy"], "f1_macro": scores["f1_macro"], "test_examples": len(self.data.test_texts),
               "train_seconds": round(fitted.train_seconds, 2), **fitted.details}
        if self.arm.recipe.config.sweep.save_models and self.state.is_main_process:
            if self.members:
                self._keep_ensemble(per_class, seed, scores, row)
            elif fitted.save is not None:
                self._keep(fitted, per_class, seed, scores, len(indices))
        row["cell_seconds"] = round(time.time() - started, 2)
        return row

    def _ensemble(self, texts: list[str], labels: list[int], per_class: int, seed: int) -> Fitted:
        """The mean of the members' class probabilities on the test texts (ULMFiT sec. 4), each member
        trained on the same labeled examples, or taken from its own cell of this sweep."""
        probabilities, seconds, accuracies = [], 0.0, {}
        self.trained_members = {}  # the members trained here, not in their own cells: kept with the ensemble
        for member, method in zip(self.arm.members, self.members):
            key = (member.fingerprint, per_class, seed)
            if key not in self.scored:
                fitted = method.fit(texts, labels, seed)
                self.scored[key] = (fitted.predict_proba(self.data.test_texts), fitted.train_seconds)
                self.trained_members[member.name] = fitted
            probabilities.append(self.scored[key][0])
            seconds += self.scored[key][1]
            accuracies[member.name] = float(np.mean(np.argmax(probabilities[-1], axis=-1) == self.data.test_labels))
        mean = np.mean(probabilities, axis=0)

        def predict_proba(given: list[str]) -> np.ndarray:
            if given is not self.data.test_texts:
                raise ValueError("an ensemble cell scores the sweep's test texts only")
            return mean

        # Training seconds: the members' (whether trained here or in their own cells).
        return Fitted(predict_proba, seconds, details={"member_accuracy": accuracies})

    def _folder(self, arm: Arm, per_class: int, seed: int) -> Path:
        return self.work_dir.parent / "models" / f"{arm.name}-{per_class}-{seed}"

    def _keep_ensemble(self, per_class: int, seed: int, scores: dict, row: dict) -> None:
        """An ensemble keeps no weights of its own: its folder names its members' folders (a member
        trained in this cell is kept beside it, as its own cell would have been), with metrics.json
        and a card; `lm-transfer predict` averages the members."""
        members = []
        for member in self.arm.members:
            folder = self._folder(member, per_class, seed)
            fitted = self.trained_members.get(member.name)
            if fitted is not None and fitted.save is not None:
                probabilities = self.scored[(member.fingerprint, per_class, seed)][0]
                member_scores = classification_metrics().compute(predictions=np.argmax(probabilities, axis=-1),
                                                                 references=self.data.test_labels)
                self._keep(fitted, per_class, seed, member_scores, row["train_examples"], arm=member)
            if not (folder / "config.json").is_file():
                raise RuntimeError(f"sweep.save_models: ensemble arm '{self.arm.name}' has no kept classifier of its "
                                   f"member '{member.name}' ({folder}); an ensemble is kept only when every member's "
                                   "method saves a model")
            members.append({"arm": member.name, "folder": folder.name, "test_accuracy": row["member_accuracy"][member.name]})
        folder = self._folder(self.arm, per_class, seed)
        remove_output(folder)
        write_ensemble(folder, members)
        resolved = copy.deepcopy(self.arm.recipe.resolved)
        resolved["run"].update(name=f"{resolved['run']['name']}-{folder.name}", seed=seed)
        metrics = {"train_examples": row["train_examples"], "examples_per_class": per_class,
                   "test_accuracy": scores["accuracy"], "test_f1_macro": scores["f1_macro"],
                   "test_examples": len(self.data.test_texts), "labels": self.data.label_names, "members": members,
                   "lm_transfer": provenance("classify", self.arm.fingerprint, self.arm.recipe.path, sweep_cell={
                       "arm": self.arm.name, "examples_per_class": per_class, "seed": seed})}
        write_record(folder, metrics, resolved)
        write_ensemble_card(folder, self.arm.recipe.path, resolved, metrics)

    def _keep(self, fitted: Fitted, per_class: int, seed: int, scores: dict, train_examples: int,
              arm: Arm | None = None) -> None:
        """A kept cell's classifier gets what a classify stage's folder has (metrics.json, the
        resolved recipe of the cell, the card), so `lm-transfer publish` takes it like any model.
        `arm`: an ensemble's member trained in the ensemble's cell."""
        arm = arm or self.arm
        folder = self._folder(arm, per_class, seed)
        test = {"test_accuracy": scores["accuracy"], "test_f1_macro": scores["f1_macro"],
                "test_examples": len(self.data.test_texts)}
        keep_model(fitted, arm, folder, seed, self.data.label_names, self.state, train_examples, test,
                   classify={"examples_per_class": per_class},
                   data={"max_test_examples": self.arm.recipe.config.sweep.test_examples},
                   metrics={"examples_per_class": per_class},
                   built_by={"sweep_cell": {"arm": arm.name, "examples_per_class": per_class, "seed": seed}})


def keep_model(fitted: Fitted, arm: Arm, folder: Path, seed: int, label_names: list[str], state, train_examples: int,
               test: dict, classify: dict, data: dict, metrics: dict, built_by: dict) -> None:
    """Writes a trained classifier (`fitted.save`) as a model folder like a classify stage's: the
    weights and tokenizer, metrics.json (its training's, `test`'s scores, `metrics`, and `built_by` in
    its provenance block), recipe.yaml (the recipe that trained it, `classify` and `data` merged into
    its classify section) and the card."""
    remove_output(folder)
    model = fitted.save(folder)
    trained_by = fitted.arm or arm  # (a self-trained cell's student arm)
    resolved = copy.deepcopy(trained_by.recipe.resolved)
    resolved["run"].update(name=f"{resolved['run']['name']}-{folder.name}", seed=seed)
    resolved["classify"].update(output_dir=str(folder), **classify)
    resolved["classify"]["data"].update(data)
    # Its training's metrics (a self-trained student's count its pseudo-labeled examples too).
    record = {**fitted.metrics, "train_examples": train_examples,  # labeled (pseudo-labeled: in self_training)
              **test, "labels": label_names, **metrics, "parameters": sum(p.numel() for p in model.parameters()),
              "hardware": describe_hardware(state),
              "lm_transfer": provenance("classify", arm.fingerprint, trained_by.recipe.path, **built_by)}
    write_record(folder, record, resolved)
    write_card(folder, "classify", trained_by.recipe.path, resolved, record)


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
