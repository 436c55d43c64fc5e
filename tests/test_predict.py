"""`lm-transfer predict`: a classifier's labels and probabilities for a file's texts, scored when the
file has labels, through the same transformers pipeline a user of the published model runs."""

import csv
import json

import pytest

from pipelines.cli import main


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("form", ["dataset folder", "csv"])
def test_predict_on_labeled_data_reproduces_the_stages_test_scores(form, awd_run, topic_data, tmp_path, capsys):
    folder = awd_run[0] / "run" / "classifier"
    data = topic_data  # a folder with train and test: its test split is read
    if form == "csv":
        data = tmp_path / "labeled.csv"
        with open(data, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for line in (topic_data / "test.jsonl").read_text().splitlines():
                writer.writerow(json.loads(line).values())
    assert main(["predict", str(folder), str(data), "--output", str(tmp_path / "preds.csv")]) == 0
    rows = read_csv(tmp_path / "preds.csv")
    expected = json.loads((folder / "metrics.json").read_text())
    assert len(rows) == expected["test_examples"] == 45
    assert list(rows[0]) == ["row", "text", "label", "probability", "p(food)", "p(sport)", "p(tech)", "true_label"]
    for row in rows:
        probabilities = [float(row[f"p({name})"]) for name in ("food", "sport", "tech")]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5) and float(row["probability"]) == max(probabilities)
        assert row["label"] == ("food", "sport", "tech")[probabilities.index(max(probabilities))]
    accuracy = sum(r["label"] == r["true_label"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(expected["test_accuracy"])  # the stage scored the same split the same way
    out = capsys.readouterr().out
    assert (f"accuracy {100 * expected['test_accuracy']:.1f} %, macro-F1 {100 * expected['test_f1_macro']:.1f} % "
            "on 45 labeled texts") in out


def test_predict_on_a_csv_without_labels(awd_run, tmp_path, capsys):
    data = tmp_path / "new.csv"
    data.write_text('text\n"the striker scored a goal in the cup match"\n""\n"garlic butter and bread in the oven"\n')
    assert main(["predict", str(awd_run[0] / "run" / "classifier"), str(data), "--output", str(tmp_path / "p.csv")]) == 0
    rows = read_csv(tmp_path / "p.csv")
    assert [r["row"] for r in rows] == ["0", "1", "2"] and "true_label" not in rows[0]
    assert [r["text"] for r in rows] == ["the striker scored a goal in the cup match", "",
                                         "garlic butter and bread in the oven"]
    assert rows[1]["label"] == "" and rows[0]["label"] in ("food", "sport", "tech")  # an empty text gets no label
    captured = capsys.readouterr()
    assert "accuracy" not in captured.out and "1 empty texts" in captured.err


def test_the_saved_tokenizer_carries_the_length_the_classifier_reads(awd_run):
    from transformers import AutoTokenizer

    folder = awd_run[0] / "run" / "classifier"
    assert AutoTokenizer.from_pretrained(folder).model_max_length == 64  # classify.max_length of the tiny recipe


@pytest.mark.parametrize("case", ["language model", "unknown labels", "no such split", "output is a folder"])
def test_predict_mistakes_are_one_line(case, awd_run, topic_data, tmp_path, capsys):
    run = awd_run[0] / "run"
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "a song", "label": "music"}) + "\n")
    args = {"language model": [str(run / "pretrain"), str(topic_data)],
            "unknown labels": [str(run / "classifier"), str(data)],
            "no such split": [str(run / "classifier"), str(topic_data), "--split", "validation"],
            "output is a folder": [str(run / "classifier"), str(topic_data)]}[case]
    output = tmp_path if case == "output is a folder" else tmp_path / "p.csv"
    assert main(["predict", *args, "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and {"language model": "not a classifier", "unknown labels": "'music'",
                                          "no such split": "no split 'validation'",
                                          "output is a folder": "is a folder"}[case] in err
    assert not (tmp_path / "p.csv").exists()


def test_predict_never_replaces_what_it_did_not_write(awd_run, tmp_path, capsys):
    folder = str(awd_run[0] / "run" / "classifier")
    data = tmp_path / "texts.csv"
    data.write_text('text\n"the striker scored a goal in the cup match"\n')
    notes = tmp_path / "notes.csv"
    notes.write_text("mine\n")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "test.csv").write_text(data.read_text())
    for output, says in [(data, "is the data being labeled"), (notes, "is not an lm-transfer predictions file"),
                         (dataset / "predictions.csv", "lies inside the data folder")]:
        source = dataset if output.parent == dataset else data
        assert main(["predict", folder, str(source), "--output", str(output)]) == 2
        assert says in capsys.readouterr().err
    assert data.read_text().startswith("text\n") and notes.read_text() == "mine\n"
    assert sorted(p.name for p in dataset.iterdir()) == ["test.csv"]
    # an earlier predictions file is replaced
    assert main(["predict", folder, str(data), "--output", str(tmp_path / "p.csv")]) == 0
    assert main(["predict", folder, str(data), "--output", str(tmp_path / "p.csv")]) == 0
