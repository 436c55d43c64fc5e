"""A user's mistakes fail before any training step, as one line with exit 2, and leave existing
outputs untouched: bad data (columns, splits, labels, class counts, encoding, files), models that are
not there or not models, output folders that cannot be written, values out of range, misspelt keys."""

import json

import pytest
from conftest import tiny_recipe, write_recipe
from huggingface_hub import constants

from pipelines.cli import main
from pipelines.config import load_recipe


def write_csv(path, rows, encoding="utf-8"):
    lines = ["text,label"] + [f"{text},{label}" for text, label in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.fixture
def workspace(tmp_path, topic_data, monkeypatch):
    """A recipe over the topic data, its output folder holding an earlier run's file (which a failed
    check must leave alone), and files with typical mistakes."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier run's output")
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(topic_data, out))
    train_only = tmp_path / "train_only"
    train_only.mkdir()
    (train_only / "train.jsonl").write_text((topic_data / "train.jsonl").read_text())
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    (unseen / "train.jsonl").write_text((topic_data / "train.jsonl").read_text())
    (unseen / "test.jsonl").write_text(json.dumps({"text": "a song", "label": "music"}) + "\n")
    write_csv(tmp_path / "latin1.csv", [("caf\u00e9 au lait", "food")] * 20 + [("goal", "sport")] * 20, "latin-1")
    write_csv(tmp_path / "numbers.csv", [("one", 1), ("two", 2)] * 10)
    write_csv(tmp_path / "unlabeled_rows.csv", [("bread", "food"), ("goal", "")] * 20)
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "notes.txt").write_text("hello")
    (tmp_path / "a_file").write_text("a file where a folder should be")
    (tmp_path / "local").mkdir()
    (tmp_path / "copy_of_test.jsonl").write_text((topic_data / "test.jsonl").read_text())
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header_only.csv").write_text("text,label\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("years of work")
    return tmp_path, recipe, out


BAD_INPUTS = {
    "missing label column": (["data.label_column=sentiment"], "no label column 'sentiment'"),
    "no test split": (["data.path=train_only"], "has no split 'test' (it has: train); set data.test_fraction"),
    "fewer examples than asked": (["classify.examples_per_class=41"],
                                  "examples_per_class=41 but split 'train' has fewer examples of the classes 'food' (40), "
                                  "'sport' (40), 'tech' (40) (column 'label'); set classify.examples_per_class to at "
                                  "most 40"),
    "test label unseen in train": (["data.path=unseen"], "split 'test' has labels that split 'train' never shows: "
                                   "'music' (1)"),
    "init_from not a model": (["run.stages=[lm_finetune,classify]", "lm_finetune.init_from=not_a_model"],
                              "lm_finetune.init_from: 'not_a_model' is not a model folder (no config.json)"),
    "missing single file": (["data.path=mydata.csv"], "data.path: local path 'mydata.csv' does not exist"),
    "missing local folder taken for a Hub id": (["data.path=local/imdb"], "no such local file or folder"),
    "file not in the encoding": (["data.path=latin1.csv", "data.test_fraction=0.25"],
                                 "not valid utf-8 text (invalid continuation byte at byte 3); set data.encoding"),
    "unknown encoding": (["data.encoding=klingon"], "data.encoding: unknown encoding 'klingon'"),
    "rows without a label": (["data.path=unlabeled_rows.csv", "data.test_fraction=0.25"],
                             "15 examples have no label in column 'label'"),
    "test split is the train split": (["data.test_split=train"],
                                      "classify.data.test_split: 'train' is text tokenizer trains on"),
    "test split is an unlabeled split": (["data.unlabeled_splits=[test]"], "classify.data.test_split: 'test' is text tokenizer trains on"),
    "carved test split, LM data without the carve": (
        ["data.path=train_only", "data.test_fraction=0.25", "lm_finetune.data.test_fraction=null"],
        "lm_finetune.data: trains on the text classify's test split is carved from, without carving the same"),
    "test file that an LM stage trains on by another path": (
        ["data.path=null", "data.files={train: train_only/train.jsonl, test: ./unseen/../train_only/train.jsonl}",
         "lm_finetune.data={path: train_only/train.jsonl}"],
        "classify.data.test_split: 'test' is text tokenizer trains on"),
    "test texts in another file an LM stage trains on": (
        ["lm_finetune.data={path: copy_of_test.jsonl}"],
        "of the classifier's 45 test texts are in the text lm_finetune trains on (copy_of_test.jsonl)"),
    "non-text text column": (["data.path=numbers.csv", "data.test_fraction=0.25", "data.text_column=label"],
                             "column 'label' holds int64, not text; set data.text_column"),
    "test_fraction with a test split": (["data.test_fraction=0.2"], "already has a test split 'test'"),
    "output folder under a file": (["run.output_dir=a_file/run"], "would be inside"),
    "output folder is a file": (["classify.output_dir=a_file"], "classify.output_dir: 'a_file' is a file"),
    "empty file": (["data.path=empty.csv", "data.test_fraction=0.25"], "'empty.csv' is empty; give a file with a header"),
    "header without rows": (["data.path=header_only.csv", "data.test_fraction=0.25"],
                            "'header_only.csv' has a header line and no rows"),
    "output folder of the user's": (["lm_finetune.output_dir=mine"], "lm_finetune.output_dir: 'mine' exists and "
                                                                     "lm-transfer did not write it"),
    "output folder inside the data": (["data.path=train_only", "data.test_fraction=0.25",
                                       "classify.output_dir=train_only/classifier"],
                                      "lies inside the data folder 'train_only'"),
    "output folder that cannot be created": (["classify.output_dir=/proc/lm-transfer"], "cannot create a folder in"),
    "seed beyond numpy's": (["run.seed=99999999999"], "run.seed: must be between 0 and 2**32 - 1"),
    "stages not a list": (["run.stages=tokenizer"], "run.stages: must be a list"),
    "negative learning rate": (["classify.training.learning_rate=-0.1"],
                               "classify.training.learning_rate: must be at least 0 (got -0.1)"),
    "negative seed": (["run.seed=-1"], "run.seed: must be between 0 and 2**32 - 1"),
    "validation fraction above 1": (["data.validation_fraction=1.5"],
                                    "validation_fraction: must be between 0 and 1, exclusive (got 1.5)"),
    "misspelt model.config key": (["pretrain.model.config.hiden_size=8"],
                                  "pretrain.model.config.hiden_size: not a field of AwdLstmConfig "
                                  "(did you mean hidden_size?)"),
    "unknown transformers model type": (["pretrain.model.backbone=transformer", "pretrain.model.model_type=lama"],
                                        "pretrain.model.model_type: 'lama' is not a transformers model type"),
    "model from scratch without a tokenizer": (["classify.init_from=null"],
                                               "classify.model.tokenizer: needed to build a model from scratch"),
    "init_from without a tokenizer": (["run.stages=[lm_finetune,classify]", "lm_finetune.init_from=lm_no_tokenizer"],
                                      "lm_finetune.init_from: 'lm_no_tokenizer' has no tokenizer"),
    "init_from without weights": (["run.stages=[lm_finetune,classify]", "lm_finetune.init_from=body"],
                                  "'body' has a config.json but no weights"),
    "init_from that is no language model": (["run.stages=[lm_finetune,classify]", "lm_finetune.init_from=vision"],
                                            "lm_finetune.init_from: 'vision' is a vit model, not a causal or masked "
                                            "language model"),
}


@pytest.fixture
def body_folder(workspace):
    """Folders that are not what a stage needs: a vision model (no language model), a config without
    weights, a language model saved without its tokenizer."""
    from transformers import ViTConfig

    from transformers import ViTModel

    from pipelines.models.awd_lstm import AwdLstmConfig, AwdLstmForCausalLM

    root = workspace[0]
    ViTModel(ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                       image_size=8, patch_size=4)).save_pretrained(root / "vision")
    ViTConfig().save_pretrained(root / "body")  # a config without weights
    AwdLstmForCausalLM(AwdLstmConfig(vocab_size=20, embedding_size=8, hidden_size=8, num_hidden_layers=1)
                       ).save_pretrained(root / "lm_no_tokenizer")
    return root / "vision"


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_one_line_before_any_training(case, workspace, body_folder, capsys):
    root, recipe, out = workspace
    overrides, message = BAD_INPUTS[case]
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for command in (["run", str(recipe)], ["validate", str(recipe), *[f"--set={o}" for o in overrides]]):
        args = command + overrides if command[0] == "run" else command
        assert main(args) == 2, case
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"error: {recipe}: ") and message in last, (case, last)
        assert "Traceback" not in err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written, nothing removed
    assert (out / "earlier.txt").read_text() == "an earlier run's output"


def test_a_hub_model_id_offline_is_one_line(workspace, capsys, monkeypatch):
    root, recipe, _ = workspace
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["run", str(recipe), "pretrain.model.backbone=checkpoint", "pretrain.model.checkpoint=gpt2"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "pretrain.model.checkpoint: 'gpt2' is not a local folder" in last and "offline mode" in last
    assert not (root / "run" / "tokenizer").exists()


def test_data_keys_only_the_classifier_reads_leave_the_language_model_stages_current(tmp_path, topic_data, capsys):
    (tmp_path / "data").mkdir()
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (topic_data / f"{split}.jsonl").read_text().splitlines()]
        lines = [json.dumps({**r, "coarse": "sport" if r["label"] == "sport" else "other"})
                 for r in (rows if split == "train" else rows[:30])]
        (tmp_path / "data" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    recipe = tiny_recipe(tmp_path / "data", tmp_path / "run")
    recipe["run"]["stages"] = ["tokenizer", "pretrain", "classify"]
    recipe["pretrain"]["training"]["num_train_epochs"] = 1
    recipe["classify"].update(init_from="${pretrain.output_dir}", examples_per_class=4)
    recipe["classify"]["training"]["num_train_epochs"] = 1
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["run", str(path)]) == 0
    built = (tmp_path / "run" / "pretrain" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", str(path), "data.label_column=coarse", "data.max_test_examples=20"]) == 0
    out = capsys.readouterr().out
    assert "[tokenizer] up to date" in out and "[pretrain] up to date" in out and "[classify] running" in out
    assert (tmp_path / "run" / "pretrain" / "metrics.json").stat().st_mtime_ns == built
    labels = json.loads((tmp_path / "run" / "classifier" / "metrics.json").read_text())["labels"]
    assert labels == ["other", "sport"]
    # a carved test split changes the language model's text: then the LM stages do depend on the labels
    carved = load_recipe(path, ["data.test_split=heldout", "data.test_fraction=0.2"]).fingerprints()
    relabeled = load_recipe(path, ["data.test_split=heldout", "data.test_fraction=0.2",
                                   "data.label_column=coarse"]).fingerprints()
    assert carved["pretrain"] != relabeled["pretrain"]


def classifier_only(recipe: dict) -> dict:
    """The tiny recipe cut to a tokenizer and a small classifier from scratch: seconds end to end."""
    recipe["run"]["stages"] = ["tokenizer", "classify"]
    recipe["classify"].update(init_from=None, model={"backbone": "awd_lstm", "tokenizer": "${tokenizer.output_dir}",
                                                     "config": {"embedding_size": 16, "hidden_size": 16,
                                                                "num_hidden_layers": 1}})
    recipe["classify"]["training"]["num_train_epochs"] = 1
    return recipe


def test_a_single_csv_with_a_carved_test_split_runs_end_to_end(tmp_path, topic_data, capsys):
    rows = [json.loads(line) for line in (topic_data / "train.jsonl").read_text().splitlines()]
    write_csv(tmp_path / "mydata.csv", [(r["text"], r["label"]) for r in rows])
    recipe = classifier_only(tiny_recipe(tmp_path / "mydata.csv", tmp_path / "run"))
    recipe["data"]["test_fraction"] = 0.25
    assert main(["run", str(write_recipe(tmp_path / "r.yaml", recipe))]) == 0
    metrics = json.loads((tmp_path / "run" / "classifier" / "metrics.json").read_text())
    assert metrics["test_examples"] == 30 and metrics["train_examples"] == 24  # 10 of each class's 40 held out
    assert "[classify] data" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing label column", "misspelt model.config key", "init_from not a model",
                                  "output folder under a file"])
def test_a_sweep_checks_every_arm_before_any_training(case, workspace, body_folder, capsys):
    root, recipe, out = workspace
    recipe_with_sweep = write_recipe(root / "sweep.yaml", {
        **tiny_recipe(root / "unused", out), "data": {"path": str(root / "train_only"), "test_fraction": 0.25},
        "sweep": {"output_dir": "${run.output_dir}/sweep", "arms": ["scratch", "ulmfit", "tfidf_lr"],
                  "examples_per_class": [2], "seeds": [0]}})
    overrides = {"init_from not a model": ["lm_finetune.init_from=not_a_model"]}.get(case, BAD_INPUTS[case][0])
    message = {"init_from not a model": "'not_a_model' is not a model folder"}.get(case, BAD_INPUTS[case][1])
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert main(["sweep", str(recipe_with_sweep), *overrides]) == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_a_recipe_with_data_files_alone_runs_end_to_end(tmp_path, topic_data):
    recipe = classifier_only(tiny_recipe(topic_data, tmp_path / "run"))
    recipe["data"] = {"files": {"train": str(topic_data / "train.jsonl"), "test": str(topic_data / "test.jsonl")}}
    assert main(["run", str(write_recipe(tmp_path / "r.yaml", recipe))]) == 0
    card = (tmp_path / "run" / "classifier" / "README.md").read_text()
    assert "Labeled data: `train.jsonl, test.jsonl`" in card


def test_a_few_test_texts_in_the_lm_text_are_reported_not_refused(tmp_path, topic_data, capsys):
    data = tmp_path / "data"
    data.mkdir()
    test = (topic_data / "test.jsonl").read_text()
    (data / "test.jsonl").write_text(test)
    (data / "train.jsonl").write_text((topic_data / "train.jsonl").read_text() + test.splitlines()[0] + "\n")
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(data, tmp_path / "run"))
    assert main(["validate", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "[tokenizer] 1 of the classifier's 45 test texts also appear in its training text" in out
