"""Self-training around any arm (`self_training:` in an arm's definition): the arm's classifier, trained
on the cell's labeled examples, is the teacher; it labels a seeded sample of unlabeled text; the most
confident share, equal per class, joins the labeled examples to train the student (the arm itself,
or a cheaper arm named as `student`); the student is the next round's teacher. As in MultiFiT's
pseudo-labelling (Eisenschlos et al. 2019) and self-training on top of pre-training (Du et al. 2021).

Only the cell's own labels and the teacher's predictions are used: the test split is scored for the
row's per-round accuracies, never trained on."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..sweep_config import SelfTrainingSection
from .cell_method import CellMethod, Fitted

# The unlabeled sample's random numbers: [seed, SAMPLE_STREAM, 0] is a stream of its own (the labeled
# subsets use [seed, label]).
SAMPLE_STREAM = 7


def sample_unlabeled(pool_size: int, size: int, seed: int, exclude: list[int] = ()) -> list[int]:
    """Positions of a seeded sample of the unlabeled pool, without `exclude` (a cell's labeled
    examples, when the pool is the train split's texts)."""
    candidates = np.setdiff1d(np.arange(pool_size), np.asarray(exclude, dtype=int))
    order = np.random.default_rng([seed, SAMPLE_STREAM, 0]).permutation(candidates)
    return sorted(order[:size].tolist())


def confident_balanced(probabilities: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """(positions, pseudo-labels) of `keep` of the rows, an equal number per class: for each class
    the rows the teacher finds most likely to be of it, each row given to one class at most. Ranking
    by each class's own probability keeps the share balanced when the teacher favours one class."""
    rows, classes = probabilities.shape
    quota = int(keep * rows) // classes
    taken = np.zeros(rows, dtype=bool)
    ranked = [iter(np.argsort(-probabilities[:, c], kind="stable")) for c in range(classes)]
    positions, labels = [], []
    for _ in range(quota):  # round-robin over classes, so no class takes another's best rows first
        for c in range(classes):
            row = next(r for r in ranked[c] if not taken[r])
            taken[row] = True
            positions.append(row)
            labels.append(c)
    return np.asarray(positions, dtype=int), np.asarray(labels, dtype=int)


class SelfTraining:
    """Teacher -> pseudo-labels -> student, `rounds` times, in one cell."""

    def __init__(self, settings: SelfTrainingSection, teacher: CellMethod, student: CellMethod,
                 pool: list[str], pool_is_train: bool):
        self.settings, self.teacher, self.student = settings, teacher, student
        self.pool, self.pool_is_train = pool, pool_is_train

    @property
    def everywhere(self) -> bool:
        return self.teacher.everywhere or self.student.everywhere

    def fit(self, texts: list[str], labels: list[int], seed: int, labeled: list[int],
            accuracy: Callable[[Fitted], float]) -> Fitted:
        """`labeled`: the cell's positions in the train split (left out of a train-split pool);
        `accuracy` scores a classifier on the sweep's test subset, for the row."""
        started = time.time()
        sample = sample_unlabeled(len(self.pool), self.settings.unlabeled, seed, labeled if self.pool_is_train else ())
        unlabeled = [self.pool[i] for i in sample]
        model = teacher = self.teacher.fit(texts, labels, seed)
        train_seconds = model.train_seconds
        rounds, teacher_accuracy = [], accuracy(model)
        for number in range(1, self.settings.rounds + 1):
            labelled_at = time.time()
            positions, pseudo = confident_balanced(model.predict_proba(unlabeled), self.settings.keep)
            train_seconds += time.time() - labelled_at
            given = (texts + [unlabeled[i] for i in positions], labels + pseudo.tolist(), seed)
            # (a student that continues from its teacher's model gets it, and which examples are labeled)
            model = (self.student.fit(*given, teacher=model, labeled=len(texts)) if self.student.learns_from_teacher()
                     else self.student.fit(*given))
            train_seconds += model.train_seconds
            student_accuracy = accuracy(model)
            rounds.append({"round": number, "teacher_accuracy": teacher_accuracy, "student_accuracy": student_accuracy,
                           "pseudo_labeled": len(positions),
                           "pseudo_per_class": np.bincount(pseudo, minlength=len(self.teacher.label_names)).tolist(),
                           **{f"student_{k}": v for k, v in model.details.items()}})
            teacher_accuracy = student_accuracy
        details = {"self_training": rounds, "unlabeled_sampled": len(unlabeled), "self_training_seconds":
                   round(time.time() - started, 2)}
        # The row's other fields are the first teacher's (as its arm's rows); each round's student's are in its round.
        return Fitted(model.predict_proba, train_seconds, {**teacher.details, **details}, model.save, model.arm,
                      {**model.metrics, **teacher.details, **details}, model.model)
