"""Which arm `lm-transfer train` trains when the recipe says `train.arm: auto`: chosen by what the data
is (how many labels the smallest class has, whether there is unlabeled text), by the rule below. The
measurements behind it (dev splits carved from train, then the test splits): docs/results/README.md,
"Which method for my data"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Self-training samples this many unlabeled texts (its arms' self_training.unlabeled); fewer than
# MIN_UNLABELED give it too few confident ones to add.
MIN_UNLABELED = 100


@dataclass
class DataKind:
    """What the choice reads of the data."""

    labels_per_class: int  # of the smallest class
    median_words: float  # of a labeled text
    unlabeled: int  # texts in the data's unlabeled splits

    @classmethod
    def of(cls, texts: list[str], labels: list[int], unlabeled: list[str] | None) -> "DataKind":
        return cls(int(np.bincount(labels).min()), float(np.median([len(t.split()) for t in texts])),
                   len(unlabeled or []))


def choose_arm(kind: DataKind) -> tuple[str, str]:
    """(arm, why): SetFit whose student keeps its body where there is unlabeled text to self-train on,
    else SetFit; both end as one classifier folder. Text length and labels per class are recorded with
    the choice and do not change it: it held on single sentences and on whole articles, at 8 and at 64
    labels per class (measured: see the module's docstring)."""
    if kind.unlabeled >= MIN_UNLABELED:
        return "setfit_self", (f"{kind.unlabeled:,} unlabeled texts: SetFit, then a student that keeps its body "
                               "self-trained on them")
    return "setfit", (f"{kind.unlabeled:,} unlabeled texts (self-training needs {MIN_UNLABELED}; add some with "
                      "data.unlabeled_splits): SetFit on the labeled examples")
