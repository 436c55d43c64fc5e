"""`TrainingArguments` extended with ULMFiT's switches; recipe `training:` sections map onto it
(checked first, without torch, by training_section.py)."""

from __future__ import annotations

import tempfile
import typing
import warnings
from dataclasses import dataclass

from transformers import TrainingArguments

from .errors import RecipeError
from .training_section import ULMFiTOptions

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
class ULMFiTTrainingArguments(TrainingArguments, ULMFiTOptions):
    """TrainingArguments with ULMFiT's switches (training_section.ULMFiTOptions)."""


_HINTS = typing.get_type_hints(ULMFiTTrainingArguments)


def check_training_args(section: dict, where: str) -> None:
    """What `training_section.check_training_section` leaves to TrainingArguments itself (enum values,
    rules between fields): it is built here, as the stage will build it."""
    try:
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
