"""The one training path for every stage: transformers' Trainer with ULMFiT's optimizer groups,
schedule and unfreezing plugged in where Trainer expects them."""

from __future__ import annotations

from transformers import Trainer

from .training_args import ULMFiTTrainingArguments
from .ulmfit import GradualUnfreezing, discriminative_param_groups, stlr_scheduler


class ULMFiTTrainer(Trainer):
    args: ULMFiTTrainingArguments

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.gradual_unfreezing:
            self.add_callback(GradualUnfreezing(self.model, self.args.unfreeze_every_steps))

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
