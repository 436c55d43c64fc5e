"""A model folder's record of itself, beside the weights: metrics.json (scores, wall time, hardware and
the provenance block that says which config built it) and recipe.yaml (the resolved recipe).

The runner writes it for every stage, a sweep for every cell classifier it keeps; cards, publish and
`is_current` read it. Nothing else names these files."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf

from . import __version__

METRICS = "metrics.json"
RECIPE = "recipe.yaml"


def provenance(stage: str, fingerprint: str, recipe_path: str, **extra) -> dict:
    """The block under metrics.json's `lm_transfer` key: what built the folder. `fingerprint` is the
    stage's config fingerprint (`LoadedRecipe.fingerprints`): the folder is current for a config with
    the same one."""
    return {"stage": stage, "config_fingerprint": fingerprint, "recipe": recipe_path, "version": __version__,
            "frameworks": framework_versions(), **extra}


def framework_versions() -> dict[str, str]:
    """The versions of what trained a model (its card's Framework versions)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("lm-transfer", "torch", "transformers", "tokenizers", "accelerate", "datasets", "peft"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def write_record(folder: Path, metrics: dict, resolved: dict) -> None:
    """metrics.json (with its provenance block already in `metrics`) and recipe.yaml, each written whole."""
    folder = Path(folder)
    text = json.dumps(metrics, indent=2, sort_keys=True)
    write_atomically(folder / METRICS, lambda temp: temp.write_text(text))
    yaml = OmegaConf.to_yaml(OmegaConf.create(resolved))
    write_atomically(folder / RECIPE, lambda temp: temp.write_text(yaml))


def read_metrics(folder: Path) -> dict | None:
    """The folder's metrics.json, or None when it has none."""
    path = Path(folder) / METRICS
    return json.loads(path.read_text()) if path.exists() else None


def read_recipe(folder: Path) -> dict | None:
    """The resolved recipe that built the folder, or None when it has none."""
    import yaml

    path = Path(folder) / RECIPE
    return yaml.safe_load(path.read_text()) if path.exists() else None


def read_provenance(folder: Path) -> dict | None:
    """metrics.json's `lm_transfer` block: None for a folder lm-transfer did not finish."""
    metrics = read_metrics(folder)
    return None if metrics is None else metrics.get("lm_transfer")


def is_current(folder: Path, fingerprint: str) -> bool:
    """Whether the folder was built by a config with this fingerprint (then a run skips it)."""
    built_by = read_provenance(folder)
    return built_by is not None and built_by.get("config_fingerprint") == fingerprint


def describe_hardware(state) -> str:
    """What trained the stage, for its card: '1 process on 2 CPU cores' or '4 processes on 4 x H100'."""
    import torch

    processes = f"{state.num_processes} process{'es' if state.num_processes > 1 else ''}"
    if torch.cuda.is_available():
        return f"{processes} on {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{processes} on {cores} CPU cores"


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(temp)` to a temporary file beside `path`, then renamed over it: a reader never sees
    half a file, and a crash leaves the old one."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(temp, 0o644)  # as a plain write would leave it (mkstemp makes it private)
        write(Path(temp))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
