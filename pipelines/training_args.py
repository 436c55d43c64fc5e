"""`TrainingArguments` extended with ULMFiT's switches; recipe `training:` sections map onto it."""

from __future__ import annotations

import dataclasses
import tempfile
import typing
import warnings
from dataclasses import dataclass, field

from huggingface_hub.dataclasses import type_validator
from transformers import TrainingArguments

from .errors import RecipeError

# Defaults that differ from TrainingArguments' because they suit this tool: no remote trackers
# (offline machines), checkpoints only at the end of epochs, progress bars on.
STAGE_DEFAULTS = {
    "report_to": "none",
    "save_strategy": "epoch",
    "save_total_limit": 1,
    "logging_steps": 10,
    "disable_tqdm": False,
}


@dataclass
class ULMFiTTrainingArguments(TrainingArguments):
    # Discriminative fine-tuning: each lower layer group's lr is the one above divided by this
    # factor (ULMFiT: 2.6). None turns it off (one lr for all groups).
    discriminative_lr_factor: float | None = field(default=None)
    # Slanted triangular learning rates (ULMFiT eq. 3) in place of lr_scheduler_type.
    slanted_triangular_lr: bool = field(default=False)
    stlr_cut_frac: float = field(default=0.1)
    stlr_ratio: float = field(default=32.0)
    # Gradual unfreezing: train only the top layer group first, unfreeze one more group from the
    # top each epoch, or every `unfreeze_every_steps` optimizer steps when set.
    gradual_unfreezing: bool = field(default=False)
    unfreeze_every_steps: int | None = field(default=None)


_FIELDS = {f.name: f for f in dataclasses.fields(ULMFiTTrainingArguments) if f.init}
_HINTS = typing.get_type_hints(ULMFiTTrainingArguments)
# Keys the stage owns: setting them in a recipe would silently do nothing, so they are refused.
_STAGE_OWNED = {"output_dir": "set the stage's output_dir instead"}


# Values TrainingArguments accepts but that cannot train: key -> (lowest allowed, highest allowed).
_RANGES = {
    "learning_rate": (0, None), "weight_decay": (0, None), "num_train_epochs": (0, None), "max_grad_norm": (0, None),
    "per_device_train_batch_size": (1, None), "per_device_eval_batch_size": (1, None),
    "gradient_accumulation_steps": (1, None), "seed": (0, None), "warmup_steps": (0, None),
    "adam_beta1": (0, 1), "adam_beta2": (0, 1), "adam_epsilon": (0, None),
    "discriminative_lr_factor": (1e-9, None), "stlr_cut_frac": (1e-9, 1 - 1e-9), "stlr_ratio": (1, None),
    "unfreeze_every_steps": (1, None),
}


def validate_training_section(section: dict, where: str) -> None:
    """Unknown keys, wrong types and values out of range fail here, naming the key, before anything runs."""
    for key, value in section.items():
        if key in _STAGE_OWNED:
            raise RecipeError(f"{where}.{key}: not a training key here ({_STAGE_OWNED[key]})")
        if key not in _FIELDS:
            raise RecipeError(f"{where}.{key}: unknown training key (not a TrainingArguments field)")
        try:
            type_validator(key, _coerce(value, _HINTS[key]), _HINTS[key])
        except (TypeError, ValueError) as err:
            hint = " (YAML reads unquoted no/yes as booleans: write \"no\")" if isinstance(value, bool) else ""
            raise RecipeError(f"{where}.{key}: {str(err).split('. Errors:')[0]}{hint}") from None
        low, high = _RANGES.get(key, (None, None))
        if value is not None and not isinstance(value, bool) and ((low is not None and value < low)
                                                                  or (high is not None and value > high)):
            bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise RecipeError(f"{where}.{key}: must be {bounds} (got {value})")
    try:  # Enum values and cross-field rules are checked by TrainingArguments itself.
        build_training_args(section, tempfile.gettempdir(), adapt_to_machine=False)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{where}: {str(err).splitlines()[0]}") from None


def _coerce(value, hint):
    # YAML writes 1 for 1.0; a float field (or float | None, as eval_steps) accepts an int the way Python does.
    floats = hint is float or (float in typing.get_args(hint) and int not in typing.get_args(hint))
    if isinstance(value, int) and not isinstance(value, bool) and floats:
        return float(value)
    return value


def _device_defaults() -> dict:
    # bf16 autocast also runs on CPUs (fast with AMX), but TrainingArguments only allows it there
    # with use_cpu; without an accelerator that is the only choice anyway.
    import torch

    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    return {} if has_accelerator else {"use_cpu": True}


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, stacklevel=3)


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16. Without them bf16 is emulated: measured on an AVX2-only CPU, a training
    step under bf16 autocast took 23x as long as in fp32 (with AMX it is 1.4-1.7x faster)."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


def precision(args: TrainingArguments) -> str:
    """The arithmetic a run actually trained in (bf16 may have been turned off for this machine)."""
    return "bf16 autocast" if args.bf16 else "fp16 autocast" if args.fp16 else "fp32"


def build_training_args(section: dict, output_dir: str, adapt_to_machine: bool = True,
                        **stage_overrides) -> ULMFiTTrainingArguments:
    """The stage's TrainingArguments; `adapt_to_machine` turns bf16 off where it would be emulated."""
    values = {**STAGE_DEFAULTS, **_device_defaults(), **{k: _coerce(v, _HINTS[k]) for k, v in section.items()}, **stage_overrides}
    if adapt_to_machine and values.get("bf16") and values.get("use_cpu") and not cpu_has_native_bf16():
        _warn_once("bf16 asked for, but this CPU has no native bf16 (AMX / AVX512-BF16), where it runs many times "
                   "slower than fp32: training in fp32")
        values["bf16"] = False
    return ULMFiTTrainingArguments(output_dir=output_dir, **values)
