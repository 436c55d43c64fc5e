"""SetFit as a sweep cell method (arm method `setfit`), at SetFit's own defaults."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from .cell_method import CellMethod, Fitted, all_classes, existing_folder


@dataclass
class SetFitOptions:
    """What a recipe sets is passed to SetFit; anything it leaves out is SetFit's own default
    (setfit.TrainingArguments: pairs drawn by oversampling the labeled examples' pairs, one epoch of
    the body in batches of 16 at 2e-5, then a logistic-regression head), as its users run it."""

    num_iterations: int | None = None  # SetFit's None: its oversampling; N: 2 x N pairs per labeled example
    max_steps: int | None = None  # a cap on the body's steps, for budgets where the default costs too much
    batch_size: int | None = None
    num_epochs: int | None = None
    body_learning_rate: float | None = None
    # lm-transfer's, not SetFit's: as a self-training student, continue the teacher's (SetFit) body on
    # pairs of the labeled and pseudo-labeled examples, a share of the teacher's steps (unless max_steps
    # says), then fit the head on the labeled examples (the pseudo-labels are the teacher's own guesses).
    keep_teacher_body: bool | None = None  # (None: no; left out of the arm's identity, as SetFit's defaults)
    teacher_steps_share: float | None = None  # a student's steps: this share of its teacher's (None: 1, as many)


# lm-transfer's options, never passed to SetFit
_OWN = ("keep_teacher_body", "teacher_steps_share")


def setfit_arguments(options: SetFitOptions) -> dict:
    """The options that are SetFit's TrainingArguments, where set."""
    return {k: v for k, v in dataclasses.asdict(options).items() if v is not None and k not in _OWN}


class SetFit(CellMethod):
    """SetFit (Tunstall et al. 2022): the classify section's init_from sentence encoder fine-tuned
    contrastively on pairs of the labeled examples, then logistic regression on its embeddings; reads
    classify.max_length tokens of each text, as the other arms do. Each row records the pairs and
    steps the body trained on (`setfit_pairs`, `setfit_steps`) and the cap, if any (`setfit_max_steps`).
    Needs the `setfit` extra."""

    # (SetFit's trainer is a Trainer: under several processes every one of them takes part)
    name, Options, everywhere, saves_model = "setfit", SetFitOptions, True, True

    @staticmethod
    def reads(classify):
        return {k: classify[k] for k in ("init_from", "data", "max_length")}

    @classmethod
    def options(cls, given, where):
        return checked(super().options(given, where), where)

    def learns_from_teacher(self) -> bool:
        return bool(self.arm.options.keep_teacher_body)

    def fit(self, texts, labels, seed, teacher: Fitted | None = None, labeled: int | None = None):
        import copy
        import tempfile

        options, start = self.arm.options, self.arm.classify.init_from
        if options.keep_teacher_body:
            if teacher is None or type(teacher.model).__name__ != "SetFitModel":
                raise RecipeError(f"arm {self.arm.name}: options.keep_teacher_body: the arm is a self-training "
                                  "student of a SetFit arm (self_training.student), not trained on its own")
            start = copy.deepcopy(teacher.model)  # (the teacher stays as it was trained)
            options = dataclasses.replace(options, max_steps=student_steps(options, teacher.details["setfit_steps"]))
            if not options.max_steps or options.max_steps < 1:  # (without a cap SetFit pairs up every pseudo-label)
                raise RuntimeError(f"arm {self.arm.name}: a student needs a step cap (got {options.max_steps})")
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="setfit-", dir=existing_folder(self.work_dir)) as scratch:
            trainer, trained = contrastive_body(start, self.arm.classify.max_length, texts, labels, seed, options, scratch,
                                                progress=self.progress)
            # SetFit's second step: its head on the trained body's vectors (a student's: the labeled examples')
            trainer.train_classifier(texts[:labeled], labels[:labeled])
        model = trainer.model

        def predict_proba(batch):
            probabilities = np.asarray(model.predict_proba(batch, as_numpy=True))
            return all_classes(model.model_head, probabilities, self.label_names)

        def save(folder):  # the body and its logistic regression as one classifier folder
            from ..stages.classify import save_classifier

            classifier = setfit_classifier(model, self.label_names, self.arm.classify.max_length)
            return save_classifier(classifier, model.model_body.tokenizer, self.label_names, folder)

        seconds = time.time() - started
        return Fitted(predict_proba, seconds, details=trained, save=save, arm=self.arm,
                      metrics={**trained, "train_runtime": seconds, "train_examples": len(texts)}, model=model)


def student_steps(options: SetFitOptions, teacher_steps: int) -> int:
    """A student's cap on its body's steps: its own max_steps, else its share of the teacher's, rounded up."""
    if options.max_steps is not None:
        return options.max_steps
    return math.ceil((options.teacher_steps_share or 1) * teacher_steps)


# sentence-transformers' pooling modes that are one of the classifier's (models/classifier.py)
_POOLINGS = {"mean": "mean", "lasttoken": "last"}


def setfit_classifier(model, label_names: list[str], max_length: int):
    """A trained SetFitModel as a TransferClassifier: its sentence encoder's transformer, pooling and
    normalisation, and its logistic-regression head as the linear layer; the same probabilities."""
    from sentence_transformers.models import Normalize, Pooling, Transformer

    from ..linear_head import linear_classifier, linear_weights

    modules = list(model.model_body)
    transformer = next(m for m in modules if isinstance(m, Transformer))
    pooling = next(m for m in modules if isinstance(m, Pooling)).pooling_mode
    if pooling not in _POOLINGS or not hasattr(model.model_head, "coef_"):
        raise RecipeError(f"setfit: a model with {pooling} pooling and a {type(model.model_head).__name__} head "
                          f"cannot be saved as a classifier folder (needs {' or '.join(_POOLINGS)} pooling and "
                          "a logistic-regression head)")
    weight, bias = linear_weights(model.model_head, label_names)
    return linear_classifier(transformer.auto_model, weight, bias, label_names, _POOLINGS[pooling],
                             any(isinstance(m, Normalize) for m in modules), max_length, model.model_body.tokenizer)


def checked(options: SetFitOptions, where: str) -> SetFitOptions:
    """SetFit's settings, refused (one line) without the setfit package or with a value not positive."""
    try:
        import setfit  # noqa: F401
    except ImportError:
        raise RecipeError(f"{where}: SetFit's training needs the setfit package: pip install 'lm-transfer[setfit]' "
                          "(in a checkout: pip install -e '.[setfit]')") from None
    bad = {k: v for k, v in dataclasses.asdict(options).items() if k != "keep_teacher_body" and v is not None and v <= 0}
    if bad:
        raise RecipeError(f"{where}: options: {', '.join(f'{k}={v}' for k, v in bad.items())}: must be positive "
                          "(or left out: SetFit's own default)")
    if options.teacher_steps_share is not None and not options.keep_teacher_body:
        raise RecipeError(f"{where}: options.teacher_steps_share is a self-training student's (with keep_teacher_body: "
                          "true): a SetFit arm on its own takes max_steps")
    return options


def contrastive_body(checkpoint, max_length: int, texts: list[str], labels: list[int], seed: int,
                     options: SetFitOptions, scratch: str, progress: bool = False):
    """SetFit's first step: the sentence encoder `checkpoint` (a folder or Hub id, or a SetFitModel to
    continue) fine-tuned on pairs of the labeled examples (same class: similar; other classes: not), at
    SetFit's defaults unless `options` set them. Returns SetFit's trainer (its model holds the trained
    body) and the row's record of what it trained; `progress`: a bar over the body's steps."""
    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from setfit import logging as setfit_logging
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ..backbones import resolve_checkpoint

    # setfit turns its own logger to INFO when imported (a line per training and per untrained head):
    # quiet while it trains here, as backbones.load_body quiets transformers, then as it was
    previous = setfit_logging.get_verbosity()
    setfit_logging.set_verbosity_warning()
    try:
        model = checkpoint if isinstance(checkpoint, SetFitModel) else SetFitModel.from_pretrained(resolve_checkpoint(checkpoint))
        model.model_body.max_seq_length = max_length
        # save_strategy "no": SetFit otherwise writes checkpoints into ./checkpoints
        args = TrainingArguments(**setfit_arguments(options), seed=seed, report_to="none", save_strategy="no",
                                 output_dir=scratch, logging_strategy="no", show_progress_bar=False)
        # (an in-memory dataset: SetFit's model-card callback looks a cached one up on the Hub)
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        # sentence-transformers pins memory by default, which warns on every training where there is no accelerator
        trainer.st_trainer.args.dataloader_pin_memory = torch.accelerator.is_available()
        for callback in (PrinterCallback, *([] if progress else [ProgressCallback])):  # (a sweep's one bar: its cells')
            trainer.remove_callback(callback)
        trainer.train_embeddings(texts, labels)
    finally:
        setfit_logging.set_verbosity(previous)
    return trainer, {"setfit_pairs": len(trainer.st_trainer.train_dataset),
                     "setfit_steps": trainer.st_trainer.state.global_step, "setfit_max_steps": options.max_steps}
