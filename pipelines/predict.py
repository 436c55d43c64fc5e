"""`lm-transfer predict FOLDER DATA`: a trained classifier (or a sweep's kept ensemble: its members'
mean probabilities) labels every text of DATA (anything `data.path` takes: a CSV / JSON Lines /
Parquet / text file, a folder, a Hub id) and writes each text's label and class probabilities as
CSV; when DATA has labels, it also reports accuracy and macro-F1 through the package's metric
modules.

Steps: check the folder holds a classifier -> read DATA's split -> predict through transformers'
text-classification pipeline (what a user of the published model runs) with a progress bar ->
write the CSV -> score against DATA's labels when it has them."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from tqdm.auto import tqdm

from .config import DataConfig
from .ensemble import is_ensemble, member_folders
from .errors import LmTransferError


class PredictError(LmTransferError):
    pass


# The CSV's first columns (then p(label) for each class, and true_label when the data has labels).
PREDICTIONS_HEADER = "row,text,label,probability"


def load_classifier(folder: str | Path):
    """The folder's text-classification pipeline (all class scores), or a clear error."""
    from transformers import AutoConfig, pipeline

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise PredictError(f"{folder}: not a model folder (no config.json); give a classifier's folder, "
                           "e.g. runs/demo-bbc/classifier")
    config = AutoConfig.from_pretrained(folder)
    if not any(name.endswith("ForSequenceClassification") or name == "TransferClassifier"
               for name in config.architectures or []):
        raise PredictError(f"{folder}: not a classifier (a {config.model_type} model without a classification "
                           "head); give the folder of a classify stage")
    import torch

    device = 0 if torch.cuda.is_available() else -1
    return pipeline("text-classification", model=str(folder), top_k=None, device=device)


def predict(folder: str | Path, data_path: str, output: str | Path = "predictions.csv", split: str | None = None,
            text_column: str = "text", label_column: str = "label", encoding: str = "utf-8",
            batch_size: int = 32) -> dict:
    """Writes `output` (one row per text: row, predicted label, its probability, every class's
    probability, the true label when DATA has one); returns the scores when DATA has labels."""
    from .data import label_names_of, read_split
    from .metrics import classification_metrics

    if Path(output).is_dir():
        raise PredictError(f"--output {output}: is a folder; give the CSV file to write")
    _check_output(Path(output), data_path)
    if batch_size < 1:
        raise PredictError(f"--batch-size {batch_size}: must be at least 1")
    members = member_folders(folder) if is_ensemble(folder) else [folder]
    classifiers = [load_classifier(member) for member in members]
    labels = _labels(classifiers[0])
    for member, classify in zip(members[1:], classifiers[1:]):
        if _labels(classify) != labels:
            raise PredictError(f"{folder}: member {member} has the labels {', '.join(_labels(classify))}, "
                               f"not {', '.join(labels)}: an ensemble averages classifiers of the same labels")
    data = DataConfig(path=data_path, text_column=text_column, label_column=label_column, encoding=encoding)
    read, ds = read_split(data, split)
    truth = label_names_of(ds, data) if label_column in ds.column_names else None
    if truth is not None:
        unknown = sorted(set(truth) - set(labels) - {None})
        if unknown:
            raise PredictError(f"{data_path}: labels the model does not know: {', '.join(map(repr, unknown[:5]))} "
                               f"(its labels: {', '.join(labels)}); set --label-column, or --label-column '' to "
                               "predict without scoring")
    texts = [t if isinstance(t, str) else "" for t in ds[text_column]]
    rows = _mean_rows([_predict_rows(classify, texts, labels, batch_size) for classify in classifiers], labels)
    _write_csv(Path(output), texts, rows, labels, truth)
    print(f"predicted {len(texts):,} texts ({read}) with {folder}: {output}", file=sys.stderr)
    if truth is None:
        return {}
    scored = [(row["label"], true) for row, true in zip(rows, truth) if row["label"] is not None and true is not None]
    index = {name: i for i, name in enumerate(labels)}
    scores = classification_metrics().compute(predictions=[index[p] for p, _ in scored],
                                              references=[index[t] for _, t in scored])
    return {"examples": len(scored), **scores}


def _check_output(output: Path, data_path: str) -> None:
    """The CSV may replace an earlier `predict` output, nothing else: not the data it reads (or a file in
    its folder, which would be read as data next time), nor any other existing file."""
    data = Path(data_path).expanduser()
    if not data.exists():
        return
    if output.exists() and output.resolve() == data.resolve():
        raise PredictError(f"--output {output}: is the data being labeled; write the predictions to another file")
    if data.is_dir() and output.resolve().is_relative_to(data.resolve()):
        raise PredictError(f"--output {output}: lies inside the data folder {data_path} (it would be read as data "
                           "next time); write the predictions outside it")
    if output.is_file():
        with open(output, encoding="utf-8", errors="replace") as handle:
            if not handle.readline().startswith(PREDICTIONS_HEADER):
                raise PredictError(f"--output {output}: exists and is not an lm-transfer predictions file; choose "
                                   "another file, or move it away")


def _labels(classify) -> list[str]:
    return [classify.model.config.id2label[i] for i in range(len(classify.model.config.id2label))]


def _mean_rows(per_member: list[list[dict]], labels: list[str]) -> list[dict]:
    """One classifier's rows as they are; an ensemble's: each text's mean class probabilities."""
    if len(per_member) == 1:
        return per_member[0]
    rows = []
    for texts_rows in zip(*per_member):
        if texts_rows[0]["probabilities"] is None:
            rows.append(texts_rows[0])
            continue
        mean = [sum(values) / len(values) for values in zip(*(row["probabilities"] for row in texts_rows))]
        rows.append({"label": labels[mean.index(max(mean))], "probabilities": mean})
    return rows


def _predict_rows(classify, texts: list[str], labels: list[str], batch_size: int) -> list[dict]:
    """One dict per text: the predicted label and every class's probability (None for an empty text,
    which has nothing to classify)."""
    present = [i for i, t in enumerate(texts) if t.strip()]
    rows = [{"label": None, "probabilities": None} for _ in texts]
    bar = tqdm(total=len(present), desc="predicting", unit="text")
    outputs = classify((texts[i] for i in present), batch_size=batch_size, truncation=True)
    for i, scores in zip(present, outputs):
        probabilities = {s["label"]: s["score"] for s in scores}
        rows[i] = {"label": max(probabilities, key=probabilities.get),
                   "probabilities": [probabilities[name] for name in labels]}
        bar.update(1)
    bar.close()
    if len(present) < len(texts):
        print(f"{len(texts) - len(present):,} empty texts: no prediction (their rows are blank)", file=sys.stderr)
    return rows


def _write_csv(path: Path, texts: list[str], rows: list[dict], labels: list[str],
               truth: list[str | None] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [*PREDICTIONS_HEADER.split(","), *(f"p({name})" for name in labels)] + (["true_label"] if truth else [])
    temp = path.with_name(f".{path.name}.partial")
    with open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for number, row in enumerate(rows):
            p = row["probabilities"]
            line = [number, texts[number], row["label"] or "", "" if p is None else f"{max(p):.6f}",
                    *(["" for _ in labels] if p is None else [f"{v:.6f}" for v in p])]
            writer.writerow(line + ([truth[number] or ""] if truth else []))
    os.replace(temp, path)
