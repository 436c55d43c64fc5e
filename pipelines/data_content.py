"""What a stage's data holds, for its identity: a data file edited in place (or a Hub dataset moved to
a new revision) makes the stages that read it stale, as a changed config does.

Local files count by their content (a hash, computed again only when a file's size or modification
time changed: a `touch` or a copy re-runs nothing); a packaged corpus by its package's version; a Hub
dataset by its revision (`data.revision`, else the one the Hub, or offline its local cache, has now).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .paths import data_file_path

# (real path, size, mtime_ns) -> content hash, for this process: fingerprints are computed often.
_HASHES: dict[tuple, str] = {}
_REVISIONS: dict[tuple, str | None] = {}


def local_files(folder: str | os.PathLike) -> list[Path]:
    """The files a local dataset folder's data can come from (the `datasets` cache and hidden files left out)."""
    root = Path(folder).resolve()
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def data_content(data: dict) -> dict:
    """A resolved `data` section's content: {"files": {name: hash}}, {"package": ...} or
    {"hub": id, "revision": sha or None}; {} when there is nothing to tell (no path)."""
    from .sources import PACKAGED

    path = data.get("path")
    if data.get("files"):
        return {"files": {split: file_hash(data_file_path(path, file)) for split, file in sorted(data["files"].items())}}
    if path is None:
        return {}
    if path in PACKAGED:
        from importlib.metadata import PackageNotFoundError, version

        package = path.split(":")[0]
        try:
            return {"package": f"{package}=={version(package)}"}
        except PackageNotFoundError:
            return {"package": package}
    local = Path(os.path.expanduser(path))
    if local.is_file():
        return {"files": {local.name: file_hash(local)}}
    if local.is_dir():
        return {"files": {p.relative_to(local.resolve()).as_posix(): file_hash(p) for p in local_files(local)}}
    return {"hub": path, "revision": hub_revision(path, data.get("revision"))}


def file_hash(path: str | os.PathLike) -> str:
    """The file's content hash (None-safe: a missing file hashes as 'missing', and its stage's check says why)."""
    try:
        real = os.path.realpath(path)
        stat = os.stat(real)
    except OSError:
        return "missing"
    key = (real, stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.blake2b(digest_size=8)
        with open(real, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def hub_revision(repo_id: str, revision: str | None = None) -> str | None:
    """The commit a Hub dataset's `revision` (default: main) names now: asked of the Hub, or offline read
    from the local cache; None when neither can tell (the identity then holds the id alone)."""
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    key = (repo_id, revision)
    if key not in _REVISIONS:
        from huggingface_hub import HfApi, constants, is_offline_mode

        found = None
        if not is_offline_mode():
            try:
                found = HfApi().dataset_info(repo_id, revision=revision, timeout=10).sha
            except Exception:  # (no network, no such repo: the data check says so, in its words)
                found = None
        if found is None:
            ref = Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
            found = ref.read_text().strip() if ref.is_file() else None
        _REVISIONS[key] = found
    return _REVISIONS[key]


def changed_files(before: dict, now: dict) -> list[str]:
    """What differs between two `data_content`s, for a message: file names, or the revision."""
    if "files" in before and "files" in now:
        old, new = before["files"], now["files"]
        return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
    if before.get("revision") != now.get("revision"):
        return [f"revision {before.get('revision')} -> {now.get('revision')}"]
    return [] if before == now else ["its source"]
