"""An ensemble's folder (a sweep's ensemble arm, e.g. ulmfit_bi, kept with `sweep.save_models`): no
weights of its own, only `ensemble.json` naming its members' classifier folders, whose class
probabilities it averages (ULMFiT sec. 4's forward + backward classifier)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import LmTransferError

ENSEMBLE_FILE = "ensemble.json"


def write_ensemble(folder: Path, members: list[dict]) -> None:
    """`members`: one dict per member with its `folder`, relative to the ensemble's parent folder
    (kept cells lie side by side) or absolute."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ENSEMBLE_FILE).write_text(json.dumps({"combine": "mean of class probabilities", "members": members},
                                                   indent=2) + "\n")


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def member_folders(folder: str | Path) -> list[Path]:
    """The members' classifier folders, each checked to exist."""
    folder = Path(folder)
    members = json.loads((folder / ENSEMBLE_FILE).read_text())["members"]
    paths = [(folder.parent / member["folder"]) for member in members]
    missing = [str(path) for path in paths if not (path / "config.json").is_file()]
    if missing:
        raise LmTransferError(f"{folder}: the ensemble's member folder(s) {', '.join(missing)} are missing; "
                              "an ensemble's folder names its members' folders, kept beside it")
    return paths
