"""`lm-transfer train`: the command for a user's own labels. One method -- the arm the recipe's
`train.arm` names, or the one choose.py picks for the data -- trained on every labeled example of the
train split (self-trained on the data's unlabeled splits when the arm says so), scored on the test
split when the data has one, and written as one classifier folder that `lm-transfer predict`,
`transformers.pipeline()`, `embed` and `publish` take.

    lm-transfer train recipes/few_labels.yaml data.path=my_labels.csv

Steps: data -> arm -> its language-model stages (if any) -> training -> the folder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import LoadedRecipe
from ..data import classification_splits, unlabeled_texts
from ..errors import RecipeError
from ..metrics import classification_metrics
from ..outputs import check_output_folder, claim, remove_output
from ..paths import data_paths, local_data_paths
from ..recipe_checks import check_train_recipe
from .arms import Arm, build_arm, refuse_students_alone
from .cells import keep_model
from .choose import DataKind, choose_arm
from .self_training import SelfTraining


def train_model(recipe: LoadedRecipe) -> dict:
    """Trains the recipe's train.arm on all its labels into train.output_dir; returns its test scores
    (empty without a test split)."""
    from accelerate import PartialState

    from ..runner import run_recipe, say_on_main

    started = time.time()
    state = PartialState()
    section, seed = check_train_recipe(recipe), recipe.config.run.seed
    folder = Path(section.output_dir)
    data = recipe.config.classify.data
    check_output_folder(f"{recipe.path}: train.output_dir", section.output_dir,
                        [*data_paths(recipe), *local_data_paths(data)], siblings=(".work",))
    # 1. data: every labeled example, the test split when there is one, the unlabeled splits' texts
    train, test, label_names = classification_splits(data, None, seed, test_required=False)
    texts, labels = list(train["text"]), list(train["label"])
    unlabeled = unlabeled_texts(data)
    if unlabeled is not None:  # (a labeled text, or one it is scored on, is never pseudo-labeled)
        known = set(texts) | (set(test["text"]) if test is not None else set())
        unlabeled = [t for t in unlabeled if t not in known]
    # 2. the arm
    kind = DataKind.of(texts, labels, unlabeled)
    name, why = (section.arm, "train.arm") if section.arm != "auto" else choose_arm(kind)
    arm = build_arm(recipe, name)
    refuse(arm, recipe, unlabeled)
    say_on_main(state, f"train {recipe.config.run.name}: arm {name} ({why}); {len(texts):,} labeled examples "
                f"({kind.labels_per_class}+ per class, {len(label_names)} classes), {kind.unlabeled:,} unlabeled texts")
    # 3. its language-model stages, 4. training
    for trains in [arm, *([arm.student] if arm.student else [])]:
        if trains.recipe.config.run.stages:  # (their data and starting models checked first, as `run` does)
            run_recipe(trains.recipe)
    # (the test split is scored once per classifier: a self-trained student's round and the folder share it)
    # (keyed by the classifier's own predict function, kept alive here: an id could be reused by a later round's)
    scored: dict = {}

    def test_scores(model) -> dict:
        if model.predict_proba not in scored:
            scored[model.predict_proba] = scores(model, test)
        return scored[model.predict_proba]

    work = claim(folder.with_name(folder.name + ".work"))
    method = arm.method(arm, label_names, state, work)
    method.progress = True  # (one model trains, for minutes on a CPU: its own bars say how far it is)
    if arm.self_training is not None:
        student = arm.student.method(arm.student, label_names, state, work) if arm.student else method
        student.progress = True
        fitted = SelfTraining(arm.self_training, method, student, unlabeled, pool_is_train=False).fit(
            texts, labels, seed, [], lambda model: None if test is None else test_scores(model)["accuracy"])
    else:
        fitted = method.fit(texts, labels, seed)
    # 5. the folder
    tested = {}
    if test is not None:
        found = test_scores(fitted)
        tested = {"test_accuracy": found["accuracy"], "test_f1_macro": found["f1_macro"], "test_examples": len(test)}
    if state.is_main_process:
        keep_model(fitted, arm, folder, seed, label_names, state, len(texts), tested, classify={}, data={},
                   metrics={"stage_wall_seconds": round(time.time() - started, 1)},
                   built_by={"trained": {"arm": name, "chosen_by": why, "data": vars(kind)}})
        remove_output(work)
    state.wait_for_everyone()
    say_on_main(state, f"train: {folder}" + (f" (test accuracy {100 * tested['test_accuracy']:.1f} %)" if tested else ""))
    return tested


def refuse(arm: Arm, recipe: LoadedRecipe, unlabeled: list[str] | None) -> None:
    """One line for an arm that cannot become one folder, or has no unlabeled text to self-train on."""
    where = f"{recipe.path}: train.arm {arm.name}"
    refuse_students_alone([arm], f"{recipe.path}: train.arm")
    if arm.members:
        raise RecipeError(f"{where}: an ensemble is several models; train each member, or choose another arm")
    if not arm.method.saves_model:
        raise RecipeError(f"{where}: method {arm.method.name} has no model folder to write (a baseline of the sweep)")
    if arm.self_training is not None and not unlabeled:
        raise RecipeError(f"{where}: self-trains on unlabeled text, and the data has none: name its splits in "
                          "data.unlabeled_splits (e.g. a file of texts without labels in data.files), or choose "
                          "an arm without self_training")


def scores(fitted, test) -> dict:
    predicted = np.argmax(fitted.predict_proba(list(test["text"])), axis=-1)
    return classification_metrics().compute(predictions=predicted, references=list(test["label"]))
