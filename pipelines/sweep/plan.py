"""What a sweep will run, checked before any training: its arms, label budgets and seeds (`plan_sweep`,
no data read), then its data (`sweep_data`: every budget against the class counts, the test subset,
the unlabeled text of self-trained arms)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import LoadedRecipe
from ..data import classification_splits, unlabeled_texts
from ..errors import DataError, RecipeError
from .arms import Arm, build_arm, refuse_students_alone
from .cells import CellData


@dataclass
class Plan:
    recipe: LoadedRecipe
    arms: dict[str, Arm]  # every arm that has cells, sweep arms first
    budgets: list[int]  # examples per class
    ablation_arms: list[str]  # arms in ablation tables (run at the ablation budget; some only there)

    @property
    def output_dir(self) -> Path:
        return Path(self.recipe.config.sweep.output_dir)

    @property
    def arms_with_students(self) -> list[Arm]:
        """Every arm that trains in a cell: the sweep's, self-training's students and ensembles' members."""
        helpers = [helper for arm in self.arms.values() for helper in [arm.student, *arm.members]
                   if helper is not None and helper.name not in self.arms]
        return [*self.arms.values(), *dict((h.name, h) for h in helpers).values()]

    def curve_cells(self, budgets: list[int]) -> list[tuple[int, int, str]]:
        """(examples per class, seed, arm) of the learning curves: the sweep's arms at its budgets."""
        sweep = self.recipe.config.sweep
        return [(b, seed, arm) for b in budgets for seed in sweep.seeds for arm in sweep.arms
                if self.arms[arm].max_examples_per_class is None or b <= self.arms[arm].max_examples_per_class]

    def cells(self, budgets: list[int]) -> list[tuple[int, int, str]]:
        """Every cell to run, the ablation tables' included, small budgets first."""
        sweep = self.recipe.config.sweep
        cells = self.curve_cells(budgets)
        if self.ablation_arms:
            b = sweep.ablation_examples_per_class
            cells += [(b, seed, arm) for seed in sweep.seeds for arm in self.ablation_arms]
        return sorted(set(cells), key=lambda c: (c[0], c[1], list(self.arms).index(c[2])))


def plan_sweep(recipe: LoadedRecipe) -> Plan:
    """Everything that can be checked without data: arms, budgets, seeds, reference, ablations."""
    sweep = recipe.config.sweep
    if sweep is None:
        raise RecipeError(f"{recipe.path}: no sweep section (see recipes/demo/bbc.yaml for one)")
    where = f"{recipe.path}: sweep"
    if (sweep.examples_per_class is None) == (sweep.total_examples is None):
        raise RecipeError(f"{where}: give the label budgets as exactly one of examples_per_class or total_examples")
    if not sweep.arms or len(set(sweep.arms)) != len(sweep.arms):
        raise RecipeError(f"{where}.arms: list each arm once (at least one)")
    if not sweep.seeds or len(set(sweep.seeds)) != len(sweep.seeds) or min(sweep.seeds) < 0:
        raise RecipeError(f"{where}.seeds: list each seed once (at least one; seeds are non-negative)")
    budgets = sweep.examples_per_class or sweep.total_examples
    if any(b < 1 for b in budgets) or len(set(budgets)) != len(budgets):
        raise RecipeError(f"{where}: label budgets must be distinct positive numbers (got {budgets})")
    if sweep.reference not in sweep.arms:
        raise RecipeError(f"{where}.reference: '{sweep.reference}' is not one of the sweep's arms "
                          f"({', '.join(sweep.arms)})")
    if sweep.test_examples is not None and sweep.test_examples < 1:
        raise RecipeError(f"{where}.test_examples: must be positive, or null for the full test split")
    ablation_arms = list(dict.fromkeys(a for table in sweep.ablations for a in table.rows.values()))
    if sweep.ablations and sweep.ablation_examples_per_class is None:
        raise RecipeError(f"{where}.ablation_examples_per_class: required with ablations")
    arms = {name: build_arm(recipe, name) for name in dict.fromkeys([*sweep.arms, *ablation_arms])}
    refuse_students_alone(list(arms.values()), f"{where}.arms")
    # The reference needs cells at the smallest budget, or no multiplier can be computed.
    cap = arms[sweep.reference].max_examples_per_class
    if cap is not None and sweep.examples_per_class and cap < min(budgets):
        raise RecipeError(f"{where}: the reference arm '{sweep.reference}' stops at {cap} examples per class, "
                          "below the smallest budget")
    semi = arms.get("ulmfit_semi")
    if semi is not None and not semi.recipe.config.lm_finetune.data.unlabeled_splits:
        raise RecipeError(f"{where}: arm ulmfit_semi needs unlabeled text: set data.unlabeled_splits "
                          "(e.g. IMDb's [unsupervised])")
    return Plan(recipe, arms, sorted(budgets), ablation_arms)


def sweep_data(plan: Plan) -> tuple[CellData, list[int]]:
    """The cells' data (train split, test subset, label names, unlabeled text when an arm
    self-trains) and the budgets per class, every budget checked against the class counts."""
    recipe, sweep = plan.recipe, plan.recipe.config.sweep
    data = replace(recipe.config.classify.data, max_test_examples=sweep.test_examples)
    # (the test subset is drawn with a fixed seed: every arm and seed is scored on the same texts)
    train, test, label_names = classification_splits(data, None, recipe.config.run.seed)
    budgets = per_class_budgets(plan, len(label_names))
    cells = plan.cells(budgets)
    on_curves = {arm for _, _, arm in plan.curve_cells(budgets)}
    if set(sweep.arms) - on_curves:
        raise RecipeError(f"{recipe.path}: sweep: arm(s) {', '.join(a for a in sweep.arms if a not in on_curves)} "
                          f"would have no cells: max_examples_per_class is below every budget {budgets} per class")
    largest = max(c[0] for c in cells)
    counts = np.bincount(np.asarray(train["label"]), minlength=len(label_names))
    short = [f"{label_names[i]} ({c})" for i, c in enumerate(counts) if c < largest]
    if short:
        raise DataError(f"{recipe.path}: sweep: a budget of {largest} examples per class, but split "
                        f"'{data.train_split}' has fewer examples of: {', '.join(short)}")
    unlabeled = None
    if any(arm.self_training for arm in plan.arms.values()):
        if data.test_split in data.unlabeled_splits:
            raise RecipeError(f"{recipe.path}: classify.data.unlabeled_splits holds the test split "
                              f"'{data.test_split}': self-training would read the texts it is scored on")
        unlabeled = unlabeled_texts(data)  # None: the train split's texts, their labels unused
        if unlabeled is not None:  # (a text also in the test split is never pseudo-labeled)
            scored = set(test["text"])
            unlabeled = [t for t in unlabeled if t not in scored]
    return CellData(train, test, label_names, unlabeled), budgets


def per_class_budgets(plan: Plan, num_classes: int) -> list[int]:
    sweep = plan.recipe.config.sweep
    if sweep.examples_per_class is not None:
        return sorted(sweep.examples_per_class)
    uneven = [t for t in sweep.total_examples if t % num_classes]
    if uneven:
        raise DataError(f"{plan.recipe.path}: sweep.total_examples {uneven} do not split equally over "
                        f"{num_classes} classes; use multiples of {num_classes} or examples_per_class")
    return sorted(t // num_classes for t in sweep.total_examples)
