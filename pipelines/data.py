"""What each stage reads from its dataset (loaded by `sources`): the language model's text, the
classifier's labeled and test examples, with checks that fail with one clear line; the stratified
few-shot sampler (LM blocks: lm_data)."""

from __future__ import annotations

import sys

import numpy as np
from accelerate import PartialState
from datasets import ClassLabel, Dataset, DatasetDict, IterableDataset, concatenate_datasets

from .config import DataConfig
from .errors import DataError
from .sources import load_splits, source_name, stratified_holdout


def _split(splits: DatasetDict, name: str, data: DataConfig) -> Dataset:
    if name not in splits:
        hint = (f"; set data.test_fraction (e.g. 0.2) to carve a test split from '{data.train_split}'"
                if name == data.test_split else "")
        raise DataError(f"dataset '{source_name(data)}' has no split '{name}' (it has: {', '.join(splits)}){hint}")
    return splits[name]


def label_names_of(ds: Dataset, data: DataConfig) -> list[str | None]:
    """Each example's label as a string (a ClassLabel's name), None where it has none."""
    feature, values = ds.features[data.label_column], ds[data.label_column]
    if isinstance(feature, ClassLabel):
        return [feature.names[v] if v is not None and v >= 0 else None for v in values]
    return [None if v is None or (isinstance(v, str) and not v.strip()) else _label_text(v) for v in values]


def _label_text(value) -> str:
    # A label column read as floats (a CSV with a blank cell) still names classes 0 and 1, not 0.0 and 1.0.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _require_column(ds: Dataset, column: str, data: DataConfig, what: str) -> None:
    if ds.column_names is None:  # a stream whose columns are known only once read
        return
    if column not in ds.column_names:
        raise DataError(f"dataset '{source_name(data)}' has no {what} column '{column}' "
                        f"(columns: {', '.join(ds.column_names)}); set data.{what}_column")
    dtype = getattr(ds.features[column], "dtype", None)
    if what == "text" and "string" not in str(dtype):
        raise DataError(f"dataset '{source_name(data)}': column '{column}' holds {dtype or 'non-text values'}, "
                        "not text; set data.text_column")


_REPORTED: set[tuple] = set()


def _non_empty(ds: Dataset, data: DataConfig, split: str) -> Dataset:
    """Drops empty texts, saying how many (once per dataset and split)."""
    column = data.text_column
    kept = ds.filter(lambda batch: [bool(t and t.strip()) for t in batch[column]], batched=True,
                     desc=f"dropping empty texts ({split})")
    if len(kept) == 0:
        raise DataError(f"dataset '{source_name(data)}' split '{split}': every text in column '{column}' is empty")
    dropped, seen = len(ds) - len(kept), (source_name(data), data.name, split, len(ds))
    if dropped and seen not in _REPORTED and PartialState().is_main_process:
        _REPORTED.add(seen)
        print(f"data: {source_name(data)} split '{split}': {dropped:,} of {len(ds):,} texts are empty; dropped",
              file=sys.stderr, flush=True)
    return kept


def read_split(data: DataConfig, split: str | None, choose: str = "--split") -> tuple[str, Dataset]:
    """(what was read, dataset) for a command that reads one split of a user's data (predict, embed):
    the split asked for, else `test` when there is one, else the only split (a single file's rows).
    `choose`: how the user names a split, for the error."""
    splits = load_splits(data)
    if split is None:
        split = "test" if "test" in splits else next(iter(splits)) if len(splits) == 1 else None
        if split is None:
            raise DataError(f"{data.path} has the splits {', '.join(splits)}: choose one with {choose}")
    if split not in splits:
        raise DataError(f"{data.path} has no split '{split}' (it has: {', '.join(splits)})")
    ds, read = splits[split], f"split '{split}' of {data.path}" if len(splits) > 1 else data.path
    if data.text_column not in ds.column_names:
        raise DataError(f"{data.path}: no text column '{data.text_column}' (columns: {', '.join(ds.column_names)}); "
                        "set --text-column")
    return read, ds


# --------------------------------------------------------------------------- language-model text


def _text_split(splits: DatasetDict, name: str, data: DataConfig) -> Dataset:
    """One split's text column, its empty texts dropped."""
    ds = _split(splits, name, data)
    _require_column(ds, data.text_column, data, "text")
    return _non_empty(ds.select_columns([data.text_column]), data, name)


def lm_text_splits(data: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    """Training text (train split + unlabeled splits; never the test split) and held-out text."""
    if data.streaming:
        return _streamed_text_splits(data)
    splits = load_splits(data)
    names = [data.train_split, *data.unlabeled_splits]
    train = concatenate_datasets([_text_split(splits, name, data) for name in names])
    if data.validation_split:
        valid = _text_split(splits, data.validation_split, data)
    else:
        if len(train) < 2:
            raise DataError(f"dataset '{source_name(data)}': need at least 2 texts to hold one out for perplexity")
        held = train.train_test_split(test_size=data.validation_fraction, seed=seed)
        train, valid = held["train"], held["test"]
    if data.max_texts is not None and len(train) > data.max_texts:
        train = train.shuffle(seed=seed).select(range(data.max_texts))
    return train, valid


def _streamed_text_splits(data: DataConfig) -> tuple[IterableDataset, IterableDataset]:
    """lm_text_splits for `data.streaming`: iterable splits, filtered as they are read."""
    splits = load_splits(data, streaming=True)
    column = data.text_column

    def text_of(name: str) -> IterableDataset:
        split = _split(splits, name, data)
        _require_column(split, column, data, "text")
        return split.select_columns([column]).filter(lambda batch: [bool(t and t.strip()) for t in batch[column]],
                                                     batched=True)

    train = concatenate_datasets([text_of(name) for name in [data.train_split, *data.unlabeled_splits]])
    if data.validation_split:
        valid = text_of(data.validation_split)
    else:  # no shuffling a stream: hold out an evenly spread share of it
        every = max(2, round(1 / data.validation_fraction))
        valid = train.filter(lambda _, index: index % every == 0, with_indices=True)
        train = train.filter(lambda _, index: index % every != 0, with_indices=True)
    if data.max_texts is not None:
        train = train.take(data.max_texts)
    return train, valid


def unlabeled_texts(data: DataConfig) -> list[str] | None:
    """The unlabeled splits' texts (empty ones dropped), for self-training; None when the data names
    none (self-training then takes the train split's texts without their labels)."""
    if not data.unlabeled_splits:
        return None
    splits = load_splits(data)
    return [text for name in data.unlabeled_splits for text in _text_split(splits, name, data)[data.text_column]]


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


def balanced_indices(groups: list, count: int, seed: int) -> list[int]:
    """Exactly min(count, len(groups)) positions, seeded, spread over the groups (labels; None is a
    group too) as evenly as their sizes allow: round robin over each group's seeded permutation."""
    keys = sorted(set(groups), key=lambda key: (key is None, str(key)))
    orders = [np.random.default_rng([seed, i]).permutation([p for p, g in enumerate(groups) if g == key])
              for i, key in enumerate(keys)]
    chosen, depth, count = [], 0, min(count, len(groups))
    while len(chosen) < count:
        chosen += [int(order[depth]) for order in orders if depth < len(order)][:count - len(chosen)]
        depth += 1
    return sorted(chosen)


def dev_split_indices(labels: list[int] | np.ndarray, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, dev) positions: per class, round(fraction * n) examples held out for choosing the
    epoch, never the class's last one. A class with one example keeps it for training, so at one
    label per class there is no dev split (dev is empty)."""
    return stratified_holdout(labels, fraction, seed, stream=1)


def classification_splits(data: DataConfig, examples_per_class: int | None, seed: int, test_required: bool = True):
    """(train, test, label_names) with the columns renamed to `text` / `label`. Fails when an example
    has no label or the test split has a label the training split never shows. With `test_required`
    off, data.test_split may be null: test is then None."""
    splits = load_splits(data)
    train = _split(splits, data.train_split, data)
    if data.test_split is None and test_required:
        raise DataError("data.test_split: classification needs a test split (or data.test_fraction to carve one)")
    test = None if data.test_split is None else _split(splits, data.test_split, data)
    for ds in (train, *([test] if test is not None else [])):
        _require_column(ds, data.text_column, data, "text")
        _require_column(ds, data.label_column, data, "label")
    train = _non_empty(train, data, data.train_split)
    test = None if test is None else _non_empty(test, data, data.test_split)
    feature = train.features[data.label_column]
    train_labels, test_labels = label_names_of(train, data), (label_names_of(test, data) if test is not None else [])
    # A ClassLabel keeps its ids; plain strings or ints: classes in sorted order.
    names = list(feature.names) if isinstance(feature, ClassLabel) else sorted(set(train_labels) - {None})
    for split, values in ((data.train_split, train_labels), (data.test_split, test_labels)):
        missing = values.count(None)
        if missing:
            raise DataError(f"dataset '{source_name(data)}' split '{split}': {missing:,} examples have no label in column "
                            f"'{data.label_column}'; fill or remove them")
    unseen = sorted(set(test_labels) - set(names))
    if unseen:
        shown = ", ".join(f"'{u}' ({test_labels.count(u)})" for u in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
        raise DataError(f"dataset '{source_name(data)}': split '{data.test_split}' has labels that split '{data.train_split}' "
                        f"never shows: {shown}; a classifier cannot predict them (known: {', '.join(names)})")
    to_id = {n: i for i, n in enumerate(names)}

    def normalise(ds: Dataset, labels: list[str]) -> Dataset:
        ds = ds.select_columns([data.text_column]).add_column("label", [to_id[v] for v in labels])
        return ds.rename_column(data.text_column, "text") if data.text_column != "text" else ds

    train, test = normalise(train, train_labels), None if test is None else normalise(test, test_labels)
    if examples_per_class is not None:
        counts = np.bincount(np.asarray(train["label"]), minlength=len(names))
        short = [f"'{names[i]}' ({c})" for i, c in enumerate(counts) if c < examples_per_class]
        if short:
            raise DataError(f"examples_per_class={examples_per_class} but split '{data.train_split}' has fewer "
                            f"examples of the class{'es' if len(short) > 1 else ''} {', '.join(short)} (column "
                            f"'{data.label_column}'); set classify.examples_per_class to at most {counts.min()}, or "
                            "add examples of those classes (or remove the classes from both splits)")
        train = train.select(stratified_indices(train["label"], examples_per_class, seed))
    if test is not None and data.max_test_examples is not None and len(test) > data.max_test_examples:
        per_class = max(1, data.max_test_examples // len(names))
        test = test.select(stratified_indices(test["label"], per_class, seed=0))
    return train, test, names
