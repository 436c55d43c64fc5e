"""The folders lm-transfer writes: it never deletes or overwrites what it did not write.

A folder is lm-transfer's to replace when it does not exist, is empty, holds the mark lm-transfer puts
in every output folder it creates (`.lm-transfer`) or lies inside such a folder, or is a finished stage folder of an earlier
version (its metrics.json names the stage that built it). Every removal goes through `remove_output`,
which refuses anything else; `check_output_folder` says so earlier, in one line, before any training,
and also refuses an output that is, holds or lies inside the data it reads. A run holds a lock on each
folder it writes (`hold_output_locks`): a second run on the same folder stops, naming the holder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import RecipeError

MARK = ".lm-transfer"
_MARK_TEXT = "Written by lm-transfer, which replaces this folder when it builds it again.\n"


def claim(folder: str | os.PathLike) -> Path:
    """Creates `folder` (and its parents) as an lm-transfer output folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mark = folder / MARK
    if not mark.exists():
        mark.write_text(_MARK_TEXT)
    return folder


def is_ours(folder: str | os.PathLike) -> bool:
    """Whether lm-transfer may replace `folder` (see the module's docstring)."""
    folder = Path(folder)
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    if not any(folder.iterdir()) or any((f / MARK).is_file() for f in [folder, *folder.absolute().parents]):
        return True  # (a folder inside one of lm-transfer's, as a sweep's cells, is lm-transfer's too)
    return _written_before_marks(folder)


def _written_before_marks(folder: Path) -> bool:
    """What versions without the mark left: a finished stage's folder, a sweep's, `lm-transfer embed`'s,
    a stage's checkpoints (each told by a file of lm-transfer's that says so)."""
    from .record import METRICS, read_provenance

    with contextlib.suppress(OSError, ValueError, AttributeError, StopIteration):
        if (folder / METRICS).is_file():
            return isinstance(read_provenance(folder), dict)
        if (folder / "results.jsonl").is_file():
            with open(folder / "results.jsonl") as rows:
                return "arm" in json.loads(next(rows))
        if (folder / "embed.json").is_file():
            return "dim" in json.loads((folder / "embed.json").read_text())
        if (folder / "fingerprint").is_file():
            return len((folder / "fingerprint").read_text()) == 16
    return False


def remove_output(folder: str | os.PathLike) -> None:
    """Deletes an lm-transfer output folder; anything else is refused (and left as it is)."""
    folder = Path(folder)
    if not is_ours(folder):
        raise RecipeError(f"{folder}: not removed: lm-transfer did not write this folder (it has no {MARK} mark); "
                          "choose another output folder, or move it away")
    shutil.rmtree(folder, ignore_errors=True)


def check_output_folder(where: str, folder: str, data_paths: Iterable[str] = (), siblings: Iterable[str] = ()) -> None:
    """One line, before any training, when lm-transfer could not write `folder` without harm: it exists
    and is not lm-transfer's, it is (or holds, or lies inside) one of `data_paths`, or it cannot be
    created. `siblings`: suffixes of the folders written beside it (.partial, .work), checked alike."""
    path = Path(os.path.expanduser(folder)).absolute()
    for other, named in [(path, folder), *((path.with_name(path.name + s), folder + s) for s in siblings)]:
        if other.exists() and not other.is_dir():
            raise RecipeError(f"{where}: '{named}' is a file, not a folder; choose another output folder")
        if not is_ours(other):
            raise RecipeError(f"{where}: '{named}' exists and lm-transfer did not write it (it would be replaced): "
                              "choose another output folder, or move it away")
    real = os.path.realpath(path)
    for data in data_paths:
        data_real = os.path.realpath(os.path.expanduser(data))
        if real == data_real or _inside(data_real, real):
            raise RecipeError(f"{where}: '{folder}' {'is' if real == data_real else 'holds'} the data path '{data}' "
                              "(it would be replaced); choose an output folder outside the data")
        if os.path.isdir(data_real) and _inside(real, data_real):
            raise RecipeError(f"{where}: '{folder}' lies inside the data folder '{data}' (its files would be read as "
                              "data); choose an output folder outside it")
    _check_creatable(where, path)


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_creatable(where: str, path: Path) -> None:
    probe = path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise RecipeError(f"{where}: '{path}' would be inside '{probe}', which is a file; choose another folder")
    try:  # (os.access says yes to root under /proc and on read-only mounts: try it)
        os.rmdir(tempfile.mkdtemp(prefix=".lm-transfer-probe-", dir=probe))
    except OSError as err:
        raise RecipeError(f"{where}: cannot create a folder in '{probe}' ({err.strerror or err}); "
                          "choose another folder") from None


# ----------------------------------------------------------------------------------------------- locks


class OutputLocked(RecipeError):
    """Another process is writing the same output folder."""


def check_stage_outputs(recipe, only: str | None = None) -> None:
    """The output folders of a run's stages (or of `only`), checked as soon as the recipe is read,
    before torch is imported (preflight checks each again just before its stage runs)."""
    from .paths import data_paths

    data = data_paths(recipe)
    for name in recipe.config.run.stages:
        if only in (None, name):
            check_stage_output(recipe, name, data)


def check_stage_output(recipe, name: str, data_paths: Iterable[str]) -> None:
    """A stage's output folder, and the .partial and .work beside it (check_output_folder)."""
    check_output_folder(f"{recipe.path}: {name}.output_dir", recipe.stage(name).output_dir, data_paths,
                        siblings=(".partial", ".work"))


@contextlib.contextmanager
def hold_output_locks(folders: Iterable[str | os.PathLike], command: str | None = None) -> Iterator[None]:
    """Locks `folders` (each through `<folder>.lock` beside it) for the duration, or raises OutputLocked
    naming the process that holds one. The operating system drops a lock when its process dies, so the
    lock of a killed run is taken over by the next one."""
    held = []
    try:
        for folder in dict.fromkeys(os.path.realpath(os.path.expanduser(f)) for f in folders):
            held.append(_acquire(Path(folder + ".lock"), command or " ".join(["lm-transfer", *sys.argv[1:]])))
        yield
    finally:
        for path, handle in reversed(held):
            _release(path, handle)


def _acquire(path: Path, command: str):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise OutputLocked(f"{path.with_suffix('')}: in use by {holder}; wait for it to finish (or stop it), "
                               "or choose another output folder") from None
        # (a holder that just released it may have deleted the file we opened: lock the one now there)
        with contextlib.suppress(FileNotFoundError):
            now, ours = os.stat(path), os.fstat(handle.fileno())
            if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino):
                break
        handle.close()
    handle.seek(0)
    handle.truncate()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    handle.write(f"process {os.getpid()} on {socket.gethostname()} ({command}, since {started})\n")
    handle.flush()
    return path, handle


def _release(path: Path, handle) -> None:
    with contextlib.suppress(OSError):
        path.unlink()  # (while still holding it: a process waiting on this file re-checks it, above)
    handle.close()
