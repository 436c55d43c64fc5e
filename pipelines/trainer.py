"""The one training path for every stage: transformers' Trainer with ULMFiT's optimizer groups,
schedule and unfreezing plugged in where Trainer expects them."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from .training_args import ULMFiTTrainingArguments
from .ulmfit import GradualUnfreezing, discriminative_param_groups, stlr_scheduler


class ULMFiTTrainer(Trainer):
    args: ULMFiTTrainingArguments

    def __init__(self, *args, carry_state: bool = False, **kwargs):
        """carry_state: truncated BPTT for a recurrent LM reading StreamBlocks in order: each batch
        starts from the previous batch's final state (detached, so gradients stop at the batch),
        training from zeros at every epoch and evaluation from zeros at every evaluate()."""
        super().__init__(*args, **kwargs)
        if self.args.gradual_unfreezing:
            self.add_callback(GradualUnfreezing(self.model, self.args.unfreeze_every_steps))
        self.carry_state = carry_state
        self.states: dict[str, tuple | None] = {}
        if carry_state:
            if self.args.accelerator_config.split_batches:
                raise ValueError("carry_state needs whole batches per process (accelerator_config.split_batches off)")
            self.add_callback(CarriedState(self.states))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.carry_state:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        phase = "train" if model.training else "eval"
        state = self.states.get(phase)
        if state is not None and state[0][0].size(1) == inputs["input_ids"].size(0):
            inputs = {**inputs, "state": state}
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        self.states[phase] = tuple((h.detach(), c.detach()) for h, c in outputs["state"])
        return (loss, outputs) if return_outputs else loss

    def evaluate(self, *args, **kwargs):
        self.states.pop("eval", None)
        return super().evaluate(*args, **kwargs)

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

    def _save_checkpoint(self, model, trial):
        # The carried state goes in before Trainer's own files: Trainer writes trainer_state.json
        # last, so a checkpoint holding it is whole (see last_complete_checkpoint).
        if self.carry_state and self.states.get("train") is not None:
            folder = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(self.states["train"], folder / state_file(self.args.process_index))
        super()._save_checkpoint(model, trial)

    def train(self, resume_from_checkpoint: str | None = None, **kwargs):
        """Trainer's train; a resumed run reports the mean loss over the whole run, the steps of
        the run it resumed included (Trainer's own mean covers only the steps it ran itself)."""
        if self.carry_state and isinstance(resume_from_checkpoint, str):
            saved = Path(resume_from_checkpoint) / state_file(self.args.process_index)
            self.states["resumed"] = torch.load(saved) if saved.exists() else None
        result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if not isinstance(resume_from_checkpoint, str):
            return result
        loss = whole_run_loss(self.state.log_history, result.training_loss, checkpoint_step(resume_from_checkpoint),
                              self.state.global_step)
        return result._replace(training_loss=loss, metrics={**result.metrics, "train_loss": loss})


class CarriedState(TrainerCallback):
    """Each epoch reads the streams from their start, so the carried state starts from zeros; a
    checkpoint keeps each process's state, so a resumed run continues the streams where it stopped."""

    def __init__(self, states: dict):
        self.states = states

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.states["train"] = self.states.pop("resumed", None)


def state_file(process_index: int) -> str:
    return f"carried_state-{process_index}.pt"


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest Trainer checkpoint in folder that was written whole: a run killed while saving
    leaves a checkpoint folder without trainer_state.json, which Trainer writes last."""
    whole = [path for path in sort_checkpoints(str(folder)) if (Path(path) / TRAINER_STATE_NAME).exists()]
    return whole[-1] if whole else None


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
