"""Metric modules shipped with the package: `evaluate.load("accuracy")` needs the Hub, these do not.

Each is an `evaluate.Metric`, so they combine, batch and run distributed like Hub metrics:
    from pipelines.metrics import Accuracy, MacroF1
    Accuracy().compute(predictions=[0, 1], references=[0, 0])  # {"accuracy": 0.5}

`LabelEfficiency` (label_efficiency.py) turns a sweep's cells into data multipliers and areas
under the learning curve.
`NeighbourRetrieval`, `Clustering`, `OutlierDetection` (embedding_quality.py) score text embeddings against labels.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score

from .embedding_quality import Clustering, NeighbourRetrieval, OutlierDetection
from .label_efficiency import LabelEfficiency

__all__ = ["Accuracy", "MacroF1", "LabelEfficiency", "NeighbourRetrieval", "Clustering", "OutlierDetection",
           "classification_metrics"]

class _LabelMetric(evaluate.Metric):
    """A metric over integer class predictions and references."""

    description = ""

    def _info(self):
        features = datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})
        return evaluate.MetricInfo(description=self.description, citation="",
                                   inputs_description="predictions, references: class ids", features=features)


class Accuracy(_LabelMetric):
    description = "Fraction of predictions equal to the reference label."

    def _compute(self, predictions, references):
        return {"accuracy": float(accuracy_score(references, predictions))}


class MacroF1(_LabelMetric):
    description = "F1 averaged over classes with equal weight (macro-F1)."

    def _compute(self, predictions, references):
        return {"f1_macro": float(f1_score(references, predictions, average="macro", zero_division=0))}


def classification_metrics():
    """Accuracy and macro-F1 together, as one `evaluate` module."""
    return evaluate.combine([Accuracy(), MacroF1()])
