"""`lm-transfer train` (pipelines/sweep/train.py) with the shipped recipes/few_labels.yaml: one method on
every label, one folder that transformers' pipeline serves with the accuracy train reports; the
method chosen by the data (choose.py); what cannot become one folder refused before any training."""

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import write_topic_dataset

from pipelines.cli import main
from pipelines.sweep.choose import MIN_UNLABELED, DataKind, choose_arm

RECIPE = str(Path(__file__).parent.parent / "recipes" / "few_labels.yaml")
HAS_SETFIT = importlib.util.find_spec("setfit") is not None and importlib.util.find_spec("all_minilm_l6_v2") is not None
# SetFit's body trained for a step or two: the tests check the plumbing, not SetFit
CAPS = ["sweep.arm_definitions.setfit.options.max_steps=2", "sweep.arm_definitions.setfit.options.batch_size=4",
        "sweep.arm_definitions.setfit_student.options.max_steps=1"]


def data_overrides(topic_data, test=True, unlabeled=None):
    """`unlabeled`: a file of more texts (their labels, if any, unused)."""
    files = {"train": f"{topic_data}/train.jsonl"}
    if test:
        files["test"] = f"{topic_data}/test.jsonl"
    if unlabeled:
        files["unlabeled"] = str(unlabeled)
    listed = ", ".join(f"{k}: {v}" for k, v in files.items())
    return ["data.path=null", f"data.files={{{listed}}}", f"data.test_split={'test' if test else 'null'}",
            f"data.unlabeled_splits={'[unlabeled]' if unlabeled else '[]'}"]


@pytest.mark.skipif(not HAS_SETFIT, reason="the setfit extra (and the packaged all-MiniLM-L6-v2) is not installed")
def test_train_writes_one_folder_that_pipeline_serves_with_the_accuracy_it_reports(tmp_path, topic_data, capsys):
    from transformers import pipeline

    # 100 new texts, and 20 that are labeled or test texts already: never pseudo-labeled
    more = (write_topic_dataset(tmp_path / "more", per_class_train=34, per_class_test=1, seed=7) / "train.jsonl")
    known = [json.loads(line) for name in ("train", "test") for line in
             (Path(topic_data) / f"{name}.jsonl").read_text().splitlines()[:10]]
    unlabeled = tmp_path / "unlabeled.jsonl"
    unlabeled.write_text(more.read_text() + "".join(json.dumps(r) + "\n" for r in known))
    assert main(["train", RECIPE, f"run.output_dir={tmp_path}/run", "train.arm=setfit_self", *CAPS,
                 *data_overrides(topic_data, unlabeled=unlabeled)]) == 0
    folder = tmp_path / "run" / "model"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["lm_transfer"]["trained"]["arm"] == "setfit_self" and metrics["train_examples"] == 120
    assert metrics["lm_transfer"]["trained"]["data"]["unlabeled"] == metrics["unlabeled_sampled"] == 102
    [round_] = metrics["self_training"]
    assert round_["pseudo_labeled"] == 51 and round_["student_setfit_steps"] == 1  # keep 0.5 of the 102 sampled
    lines = [json.loads(line) for line in (Path(topic_data) / "test.jsonl").read_text().splitlines()]
    served = pipeline("text-classification", model=str(folder), device="cpu")([r["text"] for r in lines], truncation=True)
    accuracy = np.mean([s["label"] == r["label"] for s, r in zip(served, lines)])
    assert accuracy == pytest.approx(metrics["test_accuracy"]) and metrics["test_examples"] == 45
    card = (folder / "README.md").read_text()
    assert "Trained as lm-transfer's arm `setfit_self`" in card and "one linear layer" in card
    assert not (tmp_path / "run" / "model.work").exists()
    said = capsys.readouterr()
    assert "train few-labels: arm setfit_self (train.arm)" in said.out
    # the teacher's and the student's bodies train under their own progress bars (2 steps, then 1; no title)
    bars = {m.group(1) for m in re.finditer(r"(?:^|\r|\n)100%\|[^|]*\| (\d+/\d+) \[", said.err)}
    assert {"2/2", "1/1"} <= bars


@pytest.mark.skipif(not HAS_SETFIT, reason="the setfit extra (and the packaged all-MiniLM-L6-v2) is not installed")
def test_without_test_or_unlabeled_text_auto_trains_setfit_and_the_card_says_it_was_not_evaluated(tmp_path, topic_data,
                                                                                                 capsys):
    assert main(["train", RECIPE, f"run.output_dir={tmp_path}/run", *CAPS,
                 *data_overrides(topic_data, test=False)]) == 0
    folder = tmp_path / "run" / "model"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["lm_transfer"]["trained"]["arm"] == "setfit" and "test_accuracy" not in metrics
    assert metrics["lm_transfer"]["trained"]["data"] == {"labels_per_class": 40, "median_words": pytest.approx(
        metrics["lm_transfer"]["trained"]["data"]["median_words"]), "unlabeled": 0}
    assert "Not evaluated here: the data had no test split" in (folder / "README.md").read_text()
    assert main(["predict", str(folder), f"{topic_data}/test.jsonl", "--output", str(tmp_path / "p.csv")]) == 0


@pytest.mark.parametrize("unlabeled,arm", [(0, "setfit"), (MIN_UNLABELED - 1, "setfit"), (MIN_UNLABELED, "setfit_self")])
def test_auto_self_trains_only_with_enough_unlabeled_text(unlabeled, arm):
    assert choose_arm(DataKind(labels_per_class=8, median_words=20.0, unlabeled=unlabeled))[0] == arm


def test_data_kind_reads_the_smallest_class_the_median_length_and_the_unlabeled_count():
    kind = DataKind.of(["a b", "a b c d", "a", "a b c"], [0, 0, 1, 0], ["x"] * 3)
    assert (kind.labels_per_class, kind.median_words, kind.unlabeled) == (1, 2.5, 3)


@pytest.mark.parametrize("arm,says", [
    ("tfidf_lr", "method tfidf has no model folder to write"),
    ("glove_lr", "method word_vectors has no model folder to write"),
    ("both", "an ensemble is several models"),
    ("setfit_self", "self-trains on unlabeled text, and the data has none"),
    ("setfit_student", "continue(s) a teacher's body|name it as an arm's self_training.student"),
])
def test_what_cannot_become_one_folder_is_refused_before_training(tmp_path, topic_data, capsys, arm, says):
    assert main(["train", RECIPE, f"run.output_dir={tmp_path}/run", f"train.arm={arm}",
                 "sweep.arm_definitions.both.ensemble=[setfit,tfidf_lr]",
                 *data_overrides(topic_data)]) == 2
    assert re.search(says, capsys.readouterr().err)
    assert not (tmp_path / "run" / "model").exists()


def test_a_folder_lm_transfer_did_not_write_is_refused_before_torch_is_imported(tmp_path, topic_data, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["train", RECIPE, f"train.output_dir={mine}", *data_overrides(topic_data)]) == 2
    assert "exists and lm-transfer did not write it" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"
