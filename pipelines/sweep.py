"""Label-efficiency sweep: every arm x label budget x seed is one cell, a classifier trained on that
many labeled examples and scored on a fixed test subset.

Steps: plan (every arm's recipe derived and validated, budgets checked against the data: all
before any training) -> each arm's language-model stages, built once and shared by arms whose
stages are identical (the pipeline's own cache) -> the cells, appended to results.jsonl as they
finish (a re-run skips finished cells) -> label-efficiency metrics, summary.md and curve.png.

Pairing: for a (budget, seed) every arm gets the same stratified labeled subset, and for one seed
a smaller budget is a subset of a larger one (`data.stratified_indices`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from accelerate import PartialState
from tqdm.auto import tqdm

from .cards import write_card
from .config import LoadedRecipe
from .data import classification_splits
from .errors import DataError, RecipeError
from .preflight import check_sweep_arms
from .runner import broadcast, main_only, run_recipe, say_on_main, stage_is_current
from .sweep_arms import Arm, build_arm
from .sweep_cells import CellRunner
from .sweep_report import card_section, write_atomically, write_report

RESULTS = "results.jsonl"


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    recipe: LoadedRecipe
    arms: dict[str, Arm]  # every arm that has cells, sweep arms first
    budgets: list[int]  # examples per class
    ablation_arms: list[str]  # arms in ablation tables (run at the ablation budget; some only there)

    @property
    def output_dir(self) -> Path:
        return Path(self.recipe.config.sweep.output_dir)

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


def sweep_data(plan: Plan):
    """(train, test subset, label names, budgets per class) of the sweep's cells, every budget
    checked against the training split's class counts."""
    recipe, sweep = plan.recipe, plan.recipe.config.sweep
    data = replace(recipe.config.classify.data, max_test_examples=sweep.test_examples)
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
    return train, test, label_names, budgets


def per_class_budgets(plan: Plan, num_classes: int) -> list[int]:
    sweep = plan.recipe.config.sweep
    if sweep.examples_per_class is not None:
        return sorted(sweep.examples_per_class)
    uneven = [t for t in sweep.total_examples if t % num_classes]
    if uneven:
        raise DataError(f"{plan.recipe.path}: sweep.total_examples {uneven} do not split equally over "
                        f"{num_classes} classes; use multiples of {num_classes} or examples_per_class")
    return sorted(t // num_classes for t in sweep.total_examples)


# --------------------------------------------------------------------------- results file


def read_results(path: Path) -> list[dict]:
    """Finished cells. A line cut short by a crash is dropped (and removed, so the next append
    starts on a fresh line)."""
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        write_atomically(path, lambda temp: temp.write_text(text))
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(f"{path}: line {number} is not a JSON cell; remove it (its cell is re-run)") from None
    return rows


def append_result(path: Path, row: dict) -> None:
    """One line per cell in one write to an O_APPEND file, flushed to disk: a crash leaves whole
    lines and at most one cut-off last line (dropped by read_results)."""
    data = (json.dumps(row, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def cell_key(arm: str, fingerprint: str, per_class: int, seed: int, test_examples) -> tuple:
    return (arm, fingerprint, per_class, seed, test_examples)


# --------------------------------------------------------------------------- the sweep


def run_sweep(recipe: LoadedRecipe, command: str | None = None) -> dict:
    """Runs every cell not already in results.jsonl, then writes the report. Returns the
    label-efficiency metrics."""
    import torch

    torch.set_flush_denormal(True)  # see runner.run_recipe: denormals slow CPU training 10x
    started = time.time()
    state = PartialState()
    plan = plan_sweep(recipe)
    sweep, out = recipe.config.sweep, plan.output_dir
    # 1. data, every budget checked against it, and every arm's inputs, before any training
    checked = main_only(state, lambda: (sweep_data(plan), check_sweep_arms(plan)))
    for line in checked[1] if checked else []:
        say_on_main(state, line)
    train, test, label_names, budgets = checked[0] if checked else sweep_data(plan)  # (others: now cached)
    cells = plan.cells(budgets)
    # 2. what is left to do
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    results_path = out / RESULTS
    planned = {cell_key(arm, plan.arms[arm].fingerprint, b, seed, len(test)): (b, seed, arm) for b, seed, arm in cells}
    rows = broadcast(state, main_only(state, lambda: read_results(results_path)))
    done = {_row_key(r) for r in rows} & set(planned)
    pending = [cell for key, cell in planned.items() if key not in done]
    say_on_main(state, f"sweep {recipe.config.run.name}: {len(plan.arms)} arms, budgets {budgets} per class, seeds "
                f"{list(sweep.seeds)}: {len(cells)} cells, {len(done)} already in {results_path}, {len(pending)} to run")
    # 3. LM stages of the arms that still have cells, each built once (identical stages share a folder)
    for name in dict.fromkeys(arm for _, _, arm in pending):
        arm = plan.arms[name]
        if arm.recipe.config.run.stages:
            say_on_main(state, f"[arm {name}] language model: {' -> '.join(arm.recipe.config.run.stages)}")
            run_recipe(arm.recipe, check=False)
    # 4. cells, written as they finish
    runners: dict[str, CellRunner] = {}
    bar = tqdm(total=len(pending), desc="sweep cells", unit="cell", disable=not state.is_main_process)
    def record(row: dict) -> None:
        append_result(results_path, row)
        bar.write(f"[{row['arm']}] {row['examples_per_class']}/class seed {row['seed']}: accuracy "
                  f"{100 * row['accuracy']:.1f} %, macro-F1 {100 * row['f1_macro']:.1f} % ({row['cell_seconds']:.0f} s)")

    for per_class, seed, name in pending:
        arm = plan.arms[name]
        runner = runners.setdefault(name, CellRunner(arm, train, test, label_names, state, out / "work"))
        if arm.method == "finetune":  # Trainer uses every process
            row = runner.run(per_class, seed)
            main_only(state, lambda: record(row))
        else:  # scikit-learn: the main process alone
            main_only(state, lambda: record(runner.run(per_class, seed)))
        state.wait_for_everyone()
        bar.update(1)
    bar.close()
    # 5. report from every current cell (this run's and earlier runs')
    def report() -> dict:
        shutil.rmtree(out / "work", ignore_errors=True)
        # The latest row of each planned cell (two runs at once could have written one twice).
        current = list({_row_key(r): r for r in read_results(results_path) if _row_key(r) in planned}.values())
        # A run that only re-reports has no wall time worth printing.
        efficiency = write_sweep_report(plan, current, budgets, len(label_names), command,
                                        time.time() - started if pending else None)
        say_on_main(state, f"sweep report: {out / 'summary.md'}, {out / 'curve.png'}")
        return efficiency

    efficiency = main_only(state, report) or {}
    state.wait_for_everyone()
    return efficiency


def write_sweep_report(plan: Plan, rows: list[dict], budgets: list[int], num_classes: int, command: str | None,
                       wall_seconds: float | None) -> dict:
    from .metrics.label_efficiency import LabelEfficiency

    sweep = plan.recipe.config.sweep
    # Learning curves from the sweep's budgets only: an ablation cell at another budget would add a
    # point to some arms' curves (the reference's included) and not to others.
    on_curves = set(plan.curve_cells(budgets))
    main = [r for r in rows if (r["examples_per_class"], r["seed"], r["arm"]) in on_curves]
    efficiency = LabelEfficiency().compute(arms=[r["arm"] for r in main], budgets=[r["train_examples"] for r in main],
                                           accuracies=[r["accuracy"] for r in main], reference=sweep.reference)
    text = json.dumps(efficiency, indent=2)
    write_atomically(plan.output_dir / "label_efficiency.json", lambda temp: temp.write_text(text))
    ablations = [{"title": t.title, "budget": sweep.ablation_examples_per_class * num_classes,
                  "arms": list(t.rows.items())} for t in sweep.ablations]
    write_report(main, efficiency, plan.output_dir, f"Label efficiency: {plan.recipe.config.run.name}",
                 command=command, wall_seconds=wall_seconds, lm_seconds=_lm_seconds(plan),
                 ablations=ablations or None, ablation_rows=rows)
    _show_on_classifier_card(plan, card_section(main, efficiency))
    return efficiency


def _show_on_classifier_card(plan: Plan, section: str) -> None:
    """The recipe's own classifier (`lm-transfer run`), when it is built from this same recipe,
    gets the sweep's curve and tables on its model card."""
    recipe = plan.recipe
    if "classify" not in recipe.config.run.stages:
        return
    folder = Path(recipe.config.classify.output_dir)
    if not stage_is_current(folder, recipe.fingerprints()["classify"]):
        return
    shutil.copyfile(plan.output_dir / "curve.png", folder / "curve.png")
    write_card(folder, "classify", recipe.path, recipe.resolved, json.loads((folder / "metrics.json").read_text()),
               label_efficiency=section)
    say_on_main(PartialState(), f"sweep: curve and tables added to the card of {folder}")


def _lm_seconds(plan: Plan) -> float | None:
    """Wall time of the distinct LM stages the arms use, from their metrics.json."""
    folders = {getattr(arm.recipe.config, stage).output_dir for arm in plan.arms.values()
               for stage in arm.recipe.config.run.stages}
    seconds = [json.loads(metrics.read_text()).get("stage_wall_seconds", 0)
               for metrics in (Path(f) / "metrics.json" for f in folders) if metrics.exists()]
    return sum(seconds) if seconds else None


def _row_key(row: dict) -> tuple:
    return cell_key(row["arm"], row["arm_fingerprint"], row["examples_per_class"], row["seed"], row["test_examples"])
