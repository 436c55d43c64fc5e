"""Metric modules shipped with the package: `evaluate.load("accuracy")` needs the Hub, these do not.

Each is an `evaluate.Metric`, so they combine, batch and run distributed like Hub metrics:
    from pipelines.metrics import Accuracy, MacroF1
    Accuracy().compute(predictions=[0, 1], references=[0, 0])  # {"accuracy": 0.5}
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score

_LABEL_FEATURES = datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Fraction of predictions equal to the reference label.",
            citation="", inputs_description="predictions, references: class ids",
            features=_LABEL_FEATURES)

    def _compute(self, predictions, references):
        return {"accuracy": float(accuracy_score(references, predictions))}


class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 averaged over classes with equal weight (macro-F1).",
            citation="", inputs_description="predictions, references: class ids",
            features=_LABEL_FEATURES)

    def _compute(self, predictions, references):
        return {"f1_macro": float(f1_score(references, predictions, average="macro", zero_division=0))}


def classification_metrics():
    """Accuracy and macro-F1 together, as one `evaluate` module."""
    return evaluate.combine([Accuracy(), MacroF1()])
