"""How a sweep cell turns labeled texts into a classifier: one class per arm `method`, one interface.

    method = METHODS[arm.method](arm, label_names, state, work_dir)   # one per arm, kept between cells
    fitted = method.fit(texts, labels, seed)                            # the cell's labeled examples
    fitted.predict_proba(test_texts)                                    # (n, classes) probabilities

A method keeps what its cells share (a tokenizer, frozen features of texts it has seen, word
vectors), so the test split, and self-training's unlabeled texts, are encoded once per arm, not
once per cell. The methods: pipelines/sweep/methods.py (METHODS) and setfit_method.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import RecipeError

if TYPE_CHECKING:
    from .arms import Arm


@dataclass
class Fitted:
    """A cell's trained classifier."""

    predict_proba: Callable[[list[str]], np.ndarray]
    train_seconds: float
    details: dict = field(default_factory=dict)  # extra fields of the cell's row
    # A fine-tuned classifier can be kept as a model folder: `save` writes its weights and tokenizer
    # (returns the model as saved), `arm` is the arm whose recipe trained it, `metrics` its training's.
    save: Callable[[Path], object] | None = None
    arm: Arm | None = None
    metrics: dict = field(default_factory=dict)
    model: object = None  # the trained model itself, for a self-training student that continues from it


@dataclass
class NoOptions:
    pass


class CellMethod:
    """One way to train a cell's classifier. Subclasses set `name` and implement `fit`."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions  # the dataclass of the arm's `options`
    uses_model: ClassVar[bool] = True  # reads the classify section's init_from (so its LM stages are built)
    saves_model: ClassVar[bool] = False  # its Fitted can `save` a model folder (sweep.save_models, lm-transfer train)
    everywhere: ClassVar[bool] = False  # every process trains (Trainer under several processes); else the main one
    # The training's own progress bars: `lm-transfer train` shows them; a sweep shows one bar, its cells'.
    progress: bool = False

    # As a self-training student, `fit` is called as fit(texts, labels, seed, teacher=Fitted, labeled=n):
    # the first n examples are the cell's labeled ones, the rest pseudo-labeled (see learns_from_teacher).
    def learns_from_teacher(self) -> bool:
        return False

    def __init__(self, arm: Arm, label_names: list[str], state, work_dir: Path):
        self.arm, self.label_names, self.state, self.work_dir = arm, label_names, state, Path(work_dir)

    @classmethod
    def options(cls, given: dict, where: str):
        """The arm's `options`, typed by the method's Options dataclass."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        known = [f.name for f in dataclasses.fields(cls.Options)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise RecipeError(f"{where}: options {', '.join(unknown)}: method '{cls.name}' takes "
                              f"{', '.join(known) or 'no options'}")
        try:
            return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Options), given))
        except OmegaConfBaseException as err:
            raise RecipeError(f"{where}: options: {str(err).splitlines()[0]}") from None

    @staticmethod
    def reads(classify: dict) -> dict:
        """The part of the classify section (`LoadedRecipe.stage_identity`) whose change makes this
        method's finished cells stale."""
        return {k: v for k, v in classify.items() if k not in ("examples_per_class", "compare_scratch")}

    def fit(self, texts: list[str], labels: list[int], seed: int) -> Fitted:
        raise NotImplementedError


def existing_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def all_classes(model, probabilities: np.ndarray, label_names: list[str]) -> np.ndarray:
    """scikit-learn's probabilities cover the classes it saw; a self-training student may not have
    seen every class. Columns in label order, zeros for the unseen."""
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) == len(label_names):
        return probabilities
    full = np.zeros((len(probabilities), len(label_names)), dtype=probabilities.dtype)
    full[:, np.asarray(classes, dtype=int)] = probabilities
    return full
