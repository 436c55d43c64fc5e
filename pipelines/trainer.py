"""The one training path for every stage: transformers' Trainer with ULMFiT's optimizer groups,
schedule and unfreezing plugged in where Trainer expects them."""

from __future__ import annotations

from pathlib import Path

from transformers import Trainer

from .training_args import ULMFiTTrainingArguments
from .ulmfit import GradualUnfreezing, discriminative_param_groups, stlr_scheduler


class ULMFiTTrainer(Trainer):
    args: ULMFiTTrainingArguments

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.gradual_unfreezing:
            self.add_callback(GradualUnfreezing(self.model, self.args.unfreeze_every_steps))

    def get_decay_parameter_names(self, model) -> list[str]:
        # Trainer exempts biases and LayerNorm/RMSNorm by name, which misses the head's BatchNorm
        # ("norm1"); as fastai's ULMFiT, weight decay goes on matrices (and embeddings) only.
        shapes = {name: p.ndim for name, p in model.named_parameters(remove_duplicate=False)}
        return [name for name in super().get_decay_parameter_names(model) if shapes[name] > 1]

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            groups = discriminative_param_groups(
                model, self.args.learning_rate, self.args.discriminative_lr_factor, self.args.weight_decay,
                set(self.get_decay_parameter_names(model)))
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.args.slanted_triangular_lr and self.lr_scheduler is None:
            self.lr_scheduler = stlr_scheduler(optimizer or self.optimizer, num_training_steps,
                                               self.args.stlr_cut_frac, self.args.stlr_ratio)
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def train(self, resume_from_checkpoint: str | None = None, **kwargs):
        """Trainer's train; a resumed run reports the mean loss over the whole run, the steps of
        the run it resumed included (Trainer's own mean covers only the steps it ran itself)."""
        result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if not isinstance(resume_from_checkpoint, str):
            return result
        loss = whole_run_loss(self.state.log_history, result.training_loss, checkpoint_step(resume_from_checkpoint),
                              self.state.global_step)
        return result._replace(training_loss=loss, metrics={**result.metrics, "train_loss": loss})


def checkpoint_step(checkpoint: str) -> int:
    """The optimizer step a Trainer checkpoint folder (checkpoint-<step>) was saved at."""
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def whole_run_loss(log_history: list[dict], resumed_mean: float, resumed_at: int, global_step: int) -> float:
    """Mean training loss per step over a resumed run: the earlier run's logged losses (each the
    mean over its logging interval) up to the checkpoint, and the resumed part's mean."""
    earlier, logged = 0.0, 0
    for entry in log_history:
        if "loss" in entry and entry["step"] <= resumed_at:
            earlier += entry["loss"] * (entry["step"] - logged)
            logged = entry["step"]
    resumed = global_step - resumed_at
    return (earlier + resumed_mean * resumed) / max(logged + resumed, 1)
