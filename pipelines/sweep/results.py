"""results.jsonl: one JSON line per finished cell, appended as cells finish, so a re-run skips them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DataError
from ..record import write_atomically

RESULTS = "results.jsonl"


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


def row_key(row: dict) -> tuple:
    return cell_key(row["arm"], row["arm_fingerprint"], row["examples_per_class"], row["seed"], row["test_examples"])
