"""Benchmark scripts' own logic: the short-text benchmark's data (one sentence per example, the labels
and splits kept) and the ulmfit check's shrinking overrides and corpus."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    """A script of benchmarks/ (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up while it executes)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def short_texts():
    return _benchmark("short_texts")


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


@pytest.fixture(scope="module")
def ulmfit_check():
    return _benchmark("ulmfit_check")


@pytest.mark.parametrize("size", ["cpu", "gpu", "tiny"])
def test_the_ulmfit_checks_overrides_shrink_steps_and_evaluation_only(ulmfit_check, size, tmp_path):
    """Every size's overrides are a valid shrink of recipes/imdb/ulmfit.yaml and its sweep: the models,
    tokenizer and techniques stay the recipe's."""
    from pipelines.config import load_recipe
    from pipelines.sweep import plan_sweep

    plain = load_recipe(ROOT / ulmfit_check.RECIPE).config
    (tmp_path / "general").mkdir(), (tmp_path / "imdb").mkdir()
    shrunk = load_recipe(ROOT / ulmfit_check.RECIPE, ulmfit_check.overrides(
        ulmfit_check.SIZES[size], tmp_path / "general", tmp_path / "imdb", tmp_path / "out"))
    config, sizes = shrunk.config, ulmfit_check.SIZES[size]
    for stage in ("pretrain", "lm_finetune"):
        assert getattr(config, stage).training["max_steps"] == sizes["lm_steps"]
        assert getattr(config, stage).model.config == getattr(plain, stage).model.config
        assert getattr(config, stage).model.backbone == getattr(plain, stage).model.backbone
    assert config.pretrain.data.path == config.tokenizer.data.path == str(tmp_path / "general")
    assert config.classify.data.path == str(tmp_path / "imdb") and config.classify.max_length == plain.classify.max_length
    assert config.tokenizer.vocab_size == plain.tokenizer.vocab_size
    assert {k: v for k, v in config.classify.training.items() if k not in ("max_steps", "unfreeze_every_steps",
                                                                           "save_strategy")} == \
        {k: v for k, v in plain.classify.training.items() if k != "save_strategy"}
    plan = plan_sweep(shrunk)
    assert set(plan.arms) >= set(plain.sweep.arms) and config.sweep.total_examples == [100, 200]
    assert plan.arms["ulmfit_semi"].self_training.unlabeled == sizes["unlabeled"]
    cell = plan.arms["ulmfit"].recipe.config.classify.training
    assert cell.get("max_steps", -1) == (sizes["cell_steps"] or -1)


def test_the_general_corpus_repeats_train_and_trims_validation(ulmfit_check, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.config import DataConfig
    from pipelines.sources import load_splits

    source = tmp_path / "gutenberg"
    source.mkdir()
    pq.write_table(pa.table({"text": [f"block {i}" for i in range(5)]}), source / "train.parquet")
    pq.write_table(pa.table({"text": [f"held out {i}" for i in range(4)]}), source / "validation.parquet")
    folder = ulmfit_check.general_corpus(source, 3, 2, tmp_path / "work")
    splits = load_splits(DataConfig(path=str(folder), label_column=None, test_split=None))
    assert splits["train"]["text"] == [f"block {i}" for i in range(5)] * 3
    assert splits["validation"]["text"] == ["held out 0", "held out 1"]


@pytest.mark.parametrize("base_name,long_name", [("AWD-LSTM", "AWD-LSTM-1120"), ("Llama", "Llama-1024")])
def test_a_long_block_model_trains_what_its_recipe_trains_on_longer_blocks(base_name, long_name,
                                                                          shipped_recipes_without_data):
    architectures = _benchmark("architectures")
    from pipelines.config import load_recipe

    base, long = (load_recipe(ROOT / m.recipe, m.overrides) for m in (architectures.MODELS[base_name],
                                                                      architectures.MODELS[long_name]))
    assert long.config.tokenizer.output_dir == base.config.tokenizer.output_dir  # one tokenizer: comparable perplexities
    assert long.config.run.output_dir != base.config.run.output_dir
    for stage in ("pretrain", "lm_finetune"):
        b, l = base.stage(stage), long.stage(stage)
        assert l.block_size >= 1024 > b.block_size
        tokens_per_step = [s.block_size * s.training["per_device_train_batch_size"] for s in (b, l)]
        assert tokens_per_step[0] == tokens_per_step[1]
        assert l.training["max_steps"] == b.training["max_steps"]
    positions = long.stage("pretrain").model.config.get("max_position_embeddings")
    assert positions is None or positions >= long.stage("pretrain").block_size


def test_architecture_tables_leave_out_what_a_variant_did_not_measure():
    architectures = _benchmark("architectures")
    timed = {"state_bytes": 11264, "seconds_per_token": 0.004, "tokens_per_second": 4000.0, "peak_rss_mb": 1700.0}
    full = {"by_context": {"128": timed}, "perplexity": {str(c): 100.0 for c in architectures.PERPLEXITY_CONTEXTS},
            "influence": {"1": 3.0}, "accuracy_by_length": [
                {"tokens": "", "reviews": 10, "accuracy": 0.5}] * len(architectures.LENGTH_BUCKETS)}
    variant = {"by_context": {}, "perplexity": {str(c): 90.0 for c in architectures.PERPLEXITY_CONTEXTS},
               "influence": {"1": 2.0}}
    text = architectures.tables({"AWD-LSTM": full, "Llama-1024": variant})
    assert "\n| 128 | 11 | 4.00 | 4,000 | 1,700 |\n" in text  # the variant adds no empty cost columns
    assert "| 32 | 100.0 | 90.0 |" in text and "| 1 | 3 | 2 |" in text
    assert "Llama-1024: reviews" not in text and "| 0-128 | 10, 50.0 % |" in text
