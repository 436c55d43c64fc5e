"""How a recipe's path strings are read (no torch, no datasets): which spell a local file, where a
`data.files` entry lies, when two spellings name one folder, and which local paths a data section reads."""

from __future__ import annotations

import os

# File extension -> the `datasets` builder that reads it (a .txt file: one text per line, column "text").
FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet",
           ".txt": "text"}


def same_folder(path: str) -> str:
    """A path spelled so that two spellings of one folder (relative, absolute, through a link) are equal."""
    return os.path.realpath(os.path.expanduser(path))


def spelled_local(path: str) -> bool:
    """A path that can only mean a local file or folder: it starts with ., / or ~, or ends in a data
    file's extension (anything else may be a Hub id)."""
    return path.startswith((".", "/", "~")) or os.path.splitext(path)[1].lower() in FORMATS


def data_file_path(root: str | None, file: str) -> str:
    """A data.files entry: relative to data.path when that is a folder, else to the working directory."""
    file = os.path.expanduser(file)
    if root and not os.path.isabs(file) and os.path.isdir(os.path.expanduser(root)):
        return os.path.join(os.path.expanduser(root), file)
    return file


def local_data_paths(data) -> list[str]:
    """The local files and folders a data section (a DataConfig) reads: its path when it exists here, and
    each of its `files` (no output may be, hold or lie inside one of them)."""
    paths = [data.path] if data.path is not None and os.path.exists(os.path.expanduser(data.path)) else []
    return paths + [data_file_path(data.path, file) for file in data.files.values()]


def data_paths(recipe) -> list[str]:
    """The local files and folders a recipe's stages read as data (no output may touch them)."""
    return list(dict.fromkeys(p for name in recipe.config.run.stages for p in local_data_paths(recipe.stage(name).data)))
