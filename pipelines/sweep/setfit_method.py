"""SetFit as a sweep cell method (arm method `setfit`), at SetFit's own defaults."""

from __future__ import annotations

import dataclasses
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


class SetFit(CellMethod):
    """SetFit (Tunstall et al. 2022): the classify section's init_from sentence encoder fine-tuned
    contrastively on pairs of the labeled examples, then logistic regression on its embeddings; reads
    classify.max_length tokens of each text, as the other arms do. Each row records the pairs and
    steps the body trained on (`setfit_pairs`, `setfit_steps`) and the cap, if any (`setfit_max_steps`).
    Needs the `setfit` extra."""

    # (SetFit's trainer is a Trainer: under several processes every one of them takes part)
    name, Options, everywhere = "setfit", SetFitOptions, True

    @staticmethod
    def reads(classify):
        return {k: classify[k] for k in ("init_from", "data", "max_length")}

    @classmethod
    def options(cls, given, where):
        return checked(super().options(given, where), where)

    def fit(self, texts, labels, seed):
        import tempfile

        options = self.arm.options
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="setfit-", dir=existing_folder(self.work_dir)) as scratch:
            trainer, trained = contrastive_body(self.arm.classify.init_from, self.arm.classify.max_length, texts,
                                                labels, seed, options, scratch)
            trainer.train_classifier(texts, labels)  # SetFit's second step: its head on the trained body's vectors
        model = trainer.model

        def predict_proba(batch):
            probabilities = np.asarray(model.predict_proba(batch, as_numpy=True))
            return all_classes(model.model_head, probabilities, self.label_names)

        return Fitted(predict_proba, time.time() - started, details=trained)


def checked(options: SetFitOptions, where: str) -> SetFitOptions:
    """SetFit's settings, refused (one line) without the setfit package or with a value not positive."""
    try:
        import setfit  # noqa: F401
    except ImportError:
        raise RecipeError(f"{where}: SetFit's training needs the setfit package: pip install 'lm-transfer[setfit]' "
                          "(in a checkout: pip install -e '.[setfit]')") from None
    bad = {k: v for k, v in dataclasses.asdict(options).items() if v is not None and v <= 0}
    if bad:
        raise RecipeError(f"{where}: options: {', '.join(f'{k}={v}' for k, v in bad.items())}: must be positive "
                          "(or left out: SetFit's own default)")
    return options


def contrastive_body(checkpoint: str, max_length: int, texts: list[str], labels: list[int], seed: int,
                     options: SetFitOptions, scratch: str):
    """SetFit's first step: the sentence encoder `checkpoint` fine-tuned on pairs of the labeled examples
    (same class: similar; other classes: not), at SetFit's defaults unless `options` set them. Returns
    SetFit's trainer (its model holds the trained body) and the row's record of what it trained."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ..backbones import resolve_checkpoint

    model = SetFitModel.from_pretrained(resolve_checkpoint(checkpoint))
    model.model_body.max_seq_length = max_length
    # save_strategy "no": SetFit otherwise writes checkpoints into ./checkpoints
    given = {k: v for k, v in dataclasses.asdict(options).items() if v is not None}
    args = TrainingArguments(**given, seed=seed, report_to="none", save_strategy="no", output_dir=scratch,
                             logging_strategy="no", show_progress_bar=False)
    # (an in-memory dataset: SetFit's model-card callback looks a cached one up on the Hub)
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
    for callback in (PrinterCallback, ProgressCallback):  # one progress bar: the sweep's
        trainer.remove_callback(callback)
    trainer.train_embeddings(texts, labels)
    return trainer, {"setfit_pairs": len(trainer.st_trainer.train_dataset),
                     "setfit_steps": trainer.st_trainer.state.global_step, "setfit_max_steps": options.max_steps}
