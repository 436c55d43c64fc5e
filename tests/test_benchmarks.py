"""The short-text benchmark's data: one sentence per example, the labels and splits kept."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def short_texts():
    spec = importlib.util.spec_from_file_location("short_texts", ROOT / "benchmarks" / "short_texts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ARTICLE = ("Ad sales boost Time Warner profit\n\nQuarterly profits at US media giant TimeWarner jumped 76% "
           "to $1.13bn (£600m) for the three months to December.\n\nIts profits were buoyed by one-off gains. "
           "Mr. Parsons said so.")


def test_headline_and_first_sentence(short_texts):
    assert short_texts.headline(ARTICLE) == "Ad sales boost Time Warner profit"
    assert short_texts.first_sentence(ARTICLE) == (
        "Quarterly profits at US media giant TimeWarner jumped 76% to $1.13bn (£600m) for the three "
        "months to December.")
    # An article that is one line has no body: its first sentence is that line.
    assert short_texts.first_sentence("Only a headline") == "Only a headline"


def _articles(folder: Path, rows: dict) -> Path:
    folder.mkdir()
    for split, count in rows.items():
        lines = [json.dumps({"text": f"{topic} headline {i}\n\n{topic} body {i} starts. It goes on.", "label": topic})
                 for topic in ("sport", "tech", "food") for i in range(count)]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_written_splits_keep_rows_and_labels(short_texts, tmp_path, monkeypatch):
    from pipelines.config import DataConfig
    from pipelines.sources import load_splits

    source = _articles(tmp_path / "articles", {"train": 6, "test": 2})
    monkeypatch.setattr(short_texts, "OUTPUT", str(tmp_path / "out"))
    folder = short_texts.write_dataset("first_sentences", *short_texts.load_articles(str(source)))
    with open(Path(folder) / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[:2] == [{"text": "sport body 0 starts.", "label": "sport"},
                        {"text": "sport body 1 starts.", "label": "sport"}]
    # The folder loads as a user's CSV data would: every row, every class in both splits.
    loaded = load_splits(DataConfig(path=folder))
    assert loaded["train"].num_rows == 18 and loaded["test"].num_rows == 6
    assert set(loaded["test"]["label"]) == set(loaded["train"]["label"]) == {"sport", "tech", "food"}


def test_articles_without_a_headline_line_are_refused(short_texts, topic_data):
    with pytest.raises(SystemExit, match="headline line"):
        short_texts.load_articles(str(topic_data))
