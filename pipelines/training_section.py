"""A recipe's `training:` section checked without importing torch or transformers (~10 CPU-s): its keys,
their types and their ranges, so that a mistake is answered at once. The keys are TrainingArguments'
fields, read from transformers' source, and ULMFiT's switches (defined here; training_args.py adds them
to TrainingArguments). Enum values and rules between fields are TrainingArguments' own: checked when
it is built, before the stage trains (preflight)."""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import RecipeError


@dataclass
class ULMFiTOptions:
    # Discriminative fine-tuning: each lower layer group's lr is the one above divided by this
    # factor (ULMFiT: 2.6). None turns it off (one lr for all groups).
    discriminative_lr_factor: float | None = None
    # Slanted triangular learning rates (ULMFiT eq. 3) in place of lr_scheduler_type.
    slanted_triangular_lr: bool = False
    stlr_cut_frac: float = 0.1
    stlr_ratio: float = 32.0
    # Gradual unfreezing: train only the top layer group first, unfreeze one more group from the
    # top each epoch, or every `unfreeze_every_steps` optimizer steps when set.
    gradual_unfreezing: bool = False
    unfreeze_every_steps: int | None = None


# Keys the stage owns: setting them in a recipe would silently do nothing, so they are refused.
STAGE_OWNED = {"output_dir": "set the stage's output_dir instead"}

# Values TrainingArguments accepts but that cannot train: key -> (lowest allowed, highest allowed).
RANGES = {
    "learning_rate": (0, None), "weight_decay": (0, None), "num_train_epochs": (0, None), "max_grad_norm": (0, None),
    "per_device_train_batch_size": (1, None), "per_device_eval_batch_size": (1, None),
    "gradient_accumulation_steps": (1, None), "seed": (0, 2**32 - 1), "data_seed": (0, 2**32 - 1),
    "warmup_steps": (0, None), "adam_beta1": (0, 1), "adam_beta2": (0, 1), "adam_epsilon": (0, None),
    "discriminative_lr_factor": (1e-9, None), "stlr_cut_frac": (1e-9, 1 - 1e-9), "stlr_ratio": (1, None),
    "unfreeze_every_steps": (1, None),
}

# What a simple annotation accepts of the values a YAML file can hold.
_ACCEPTS = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "None": lambda v: v is None,
    "list": lambda v: isinstance(v, list), "List": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict), "Dict": lambda v: isinstance(v, dict),
}


@functools.cache
def training_keys() -> dict[str, str]:
    """Every key a training section may set -> its annotation as written: TrainingArguments' init
    fields, parsed from the installed transformers' training_args.py (not imported), and ULMFiT's."""
    spec = importlib.util.find_spec("transformers")
    source = Path(spec.origin).with_name("training_args.py").read_text(encoding="utf-8")
    cls = next(node for node in ast.parse(source).body
               if isinstance(node, ast.ClassDef) and node.name == "TrainingArguments")
    keys = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and not _init_false(node.value):
            keys[node.target.id] = ast.unparse(node.annotation)
    keys.update({f.name: str(f.type) for f in dataclasses.fields(ULMFiTOptions)})
    return keys


def _init_false(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Call) and any(k.arg == "init" and isinstance(k.value, ast.Constant)
                                               and k.value.value is False for k in value.keywords)


def check_training_section(section: dict, where: str) -> None:
    """Unknown keys, wrong types and values out of range fail here, naming the key, before anything runs."""
    keys = training_keys()
    for key, value in section.items():
        if key in STAGE_OWNED:
            raise RecipeError(f"{where}.{key}: not a training key here ({STAGE_OWNED[key]})")
        if key not in keys:
            import difflib

            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise RecipeError(f"{where}.{key}: unknown training key (not a TrainingArguments field){hint}")
        allowed = _alternatives(keys[key])
        if allowed is not None and not any(_matches(value, alternative) for alternative in allowed):
            hint = " (YAML reads unquoted no/yes as booleans: write \"no\")" if isinstance(value, bool) else ""
            spelled = [a if isinstance(a, str) else repr(a[1]) for a in allowed]
            raise RecipeError(f"{where}.{key}: must be {' or '.join(spelled)}, got {value!r}{hint}")
        low, high = RANGES.get(key, (None, None))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                (low is not None and value < low) or (high is not None and value > high)):
            bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise RecipeError(f"{where}.{key}: must be {bounds} (got {value})")


def _matches(value, alternative) -> bool:
    if isinstance(alternative, str):
        return _ACCEPTS[alternative](value)
    return value == alternative[1]  # ("=", a Literal's value)


@functools.cache
def _alternatives(annotation: str) -> tuple | None:
    """The simple types (and Literal values) an annotation allows; None when any part of it is a type
    checked only when TrainingArguments is built (an enum, Any, a class)."""
    found = []

    def walk(node) -> bool:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return walk(node.left) and walk(node.right)
        if isinstance(node, ast.Constant) and node.value is None:
            found.append("None")
            return True
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            name, inner = node.value.id, node.slice
            items = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            if name in ("Optional", "Union"):
                return all(walk(item) for item in items) and (name == "Union" or walk(ast.Constant(None)))
            if name == "Literal":
                found.extend(("=", item.value) for item in items if isinstance(item, ast.Constant))
                return len(found) > 0
            return walk(node.value)  # list[str] -> list
        if isinstance(node, ast.Name) and node.id in _ACCEPTS:
            found.append(node.id)
            return True
        return False

    return tuple(found) if walk(ast.parse(annotation, mode="eval").body) else None
