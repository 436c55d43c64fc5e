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
        try:
            import setfit  # noqa: F401
        except ImportError:
            raise RecipeError(f"{where}: method setfit needs the setfit package: pip install 'lm-transfer[setfit]' "
                              "(in a checkout: pip install -e '.[setfit]')") from None
        options = super().options(given, where)
        bad = {k: v for k, v in dataclasses.asdict(options).items() if v is not None and v <= 0}
        if bad:
            raise RecipeError(f"{where}: options: {', '.join(f'{k}={v}' for k, v in bad.items())}: must be positive "
                              "(or left out: SetFit's own default)")
        return options

    def fit(self, texts, labels, seed):
        import tempfile

        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        from ..backbones import resolve_checkpoint

        options = self.arm.options
        started = time.time()
        model = SetFitModel.from_pretrained(resolve_checkpoint(self.arm.classify.init_from))
        model.model_body.max_seq_length = self.arm.classify.max_length
        with tempfile.TemporaryDirectory(prefix="setfit-", dir=existing_folder(self.work_dir)) as scratch:
            # save_strategy "no": SetFit otherwise writes checkpoints into ./checkpoints
            given = {k: v for k, v in dataclasses.asdict(options).items() if v is not None}
            args = TrainingArguments(**given, seed=seed, report_to="none", save_strategy="no", output_dir=scratch,
                                     logging_strategy="no", show_progress_bar=False)
            # (an in-memory dataset: SetFit's model-card callback looks a cached one up on the Hub)
            trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
            for callback in (PrinterCallback, ProgressCallback):  # one progress bar: the sweep's
                trainer.remove_callback(callback)
            trainer.train()
            trained = {"setfit_pairs": len(trainer.st_trainer.train_dataset),
                       "setfit_steps": trainer.st_trainer.state.global_step, "setfit_max_steps": options.max_steps}

        def predict_proba(batch):
            probabilities = np.asarray(model.predict_proba(batch, as_numpy=True))
            return all_classes(model.model_head, probabilities, self.label_names)

        return Fitted(predict_proba, time.time() - started, details=trained)
