"""Stage 4: a sequence classifier built from the language model (its body reused, a new concat-pooling
head), fine-tuned with the ULMFiT techniques on few labels, evaluated on the test split.

`build_classifier` and `fit_and_test` are also what every fine-tuning cell of a sweep runs."""

from __future__ import annotations

import dataclasses

import numpy as np
from transformers import AutoModel, DataCollatorWithPadding, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..backbones import (body_config, load_body, load_tokenizer, new_language_model, random_body_like,
                         save_tokenizer, tokenizer_source)
from ..config import ClassifyStage
from ..data import classification_splits, dev_split_indices
from ..errors import RecipeError
from ..metrics import classification_metrics
from ..models.classifier import TransferClassifier, hidden_width
from ..peft_adapters import apply_lora, merge_lora
from ..sentence_encoder import write_files
from ..trainer import ULMFiTTrainer
from ..training_args import build_training_args, precision

# ULMFiT's bptt for the recurrent backbone; transformers read chunks of their own context size.
RECURRENT_BPTT = 70
# The from-scratch baseline of a classifier config (classify.compare_scratch and the sweep's scratch
# arm, declared here once): init_from's architecture and tokenizer with random weights, every
# parameter trained. Transfer techniques and adapters mean nothing for random weights.
FROM_SCRATCH = {"random_init": True, "peft": None, "freeze_body": False,
                "training": {"gradual_unfreezing": False, "discriminative_lr_factor": None}}


def from_scratch(cfg: ClassifyStage) -> ClassifyStage:
    changes = {k: v for k, v in FROM_SCRATCH.items() if k != "training"}
    return dataclasses.replace(cfg, **changes, training={**cfg.training, **FROM_SCRATCH["training"]})


def run(ctx) -> dict:
    cfg = ctx.config
    where = f"{ctx.recipe.path}: {ctx.name}"
    # 1. data: the few labeled examples (stratified, seeded) and the test split
    with ctx.state.main_process_first():
        train, test, label_names = classification_splits(cfg.data, cfg.examples_per_class, ctx.seed)
    # 2. tokenizer
    tokenizer = classifier_tokenizer(cfg, where)
    with ctx.state.main_process_first():
        train_tok = tokenize(train, tokenizer, cfg.max_length, "labeled examples")
        test_tok = tokenize(test, tokenizer, cfg.max_length, "test examples")
    # 3. model: the LM's body (or random weights) with a new head; 4. train and test
    set_seed(ctx.seed)
    model = build_classifier(cfg, tokenizer, label_names, where)
    transferred = fit_and_test(cfg, model, tokenizer, train_tok, test_tok, ctx.seed, str(ctx.work_dir),
                               resume_from=ctx.resume_checkpoint())
    metrics = {**transferred["metrics"], "train_examples": len(train), "test_examples": len(test),
               "labels": label_names, "examples_per_class": cfg.examples_per_class}
    # 5. save the (LoRA-merged) classifier with its tokenizer
    if ctx.state.is_main_process:
        saved = save_classifier(transferred["model"], tokenizer, label_names, ctx.partial_dir)
        metrics["parameters"] = sum(p.numel() for p in saved.parameters())  # as saved: LoRA merged
    # 6. the same classifier from random init on the same labels, for comparison
    if cfg.compare_scratch:
        scratch_cfg = from_scratch(cfg)
        set_seed(ctx.seed)
        scratch = fit_and_test(scratch_cfg, build_classifier(scratch_cfg, tokenizer, label_names, where), tokenizer,
                               train_tok, test_tok, ctx.seed, str(ctx.work_dir / "scratch"))
        metrics["scratch"] = scratch["metrics"]
    return metrics


def default_bptt(body, max_length: int) -> int:
    """BPT3C's chunk length when the recipe gives none: ULMFiT's 70 for a recurrent body; a
    transformer reads up to its own context at once."""
    if getattr(body, "is_recurrent", False):
        return RECURRENT_BPTT
    return min(getattr(body.config, "max_position_embeddings", None) or max_length, max_length)


def classifier_tokenizer(cfg: ClassifyStage, where: str):
    return load_tokenizer(tokenizer_source(cfg, where)[1])


def tokenize(ds, tokenizer, max_length: int, what: str):
    return ds.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length), batched=True,
                  remove_columns=["text"], desc=f"tokenizing {what}")


def build_classifier(cfg: ClassifyStage, tokenizer, label_names: list[str], where: str) -> TransferClassifier:
    """The classifier the config asks for: init_from's body (or its architecture with random
    weights), or the recipe's model from scratch; a new pooling head; LoRA or a frozen body."""
    if cfg.init_from and cfg.random_init:
        body = AutoModel.from_config(body_config(cfg.init_from, cfg.model.config))
    elif cfg.init_from:
        body = load_body(cfg.init_from, body_config(cfg.init_from, cfg.model.config))
    else:
        lm = new_language_model(cfg.model, tokenizer, "causal", where)
        body = random_body_like(getattr(lm, lm.base_model_prefix))
    direction = getattr(body.config, "direction", "forward")  # the direction its language model read
    if cfg.direction is not None and cfg.direction != direction and not cfg.random_init:
        raise RecipeError(f"{where}.direction: {cfg.direction}, but init_from's language model reads {direction}")
    direction = cfg.direction or direction
    bptt = cfg.bptt or default_bptt(body, cfg.max_length)
    model = TransferClassifier.from_body(
        body, num_labels=len(label_names), pooling=cfg.pooling, direction=direction, head_hidden=cfg.head_hidden,
        head_dropout=cfg.head_dropout, bptt=bptt, max_tokens=cfg.max_length, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if cfg.freeze_body:
        model.backbone.requires_grad_(False)
    if cfg.peft is not None:
        model = apply_lora(model, cfg.peft)
    return model


def fit_and_test(cfg: ClassifyStage, model, tokenizer, train_tok, test_tok, seed: int, work_dir: str,
                 resume_from: str | None = None, quiet: bool = False, **training_overrides) -> dict:
    """Trains the classifier on `train_tok` and scores it on `test_tok`."""
    trainer, metrics = fit(cfg, model, tokenizer, train_tok, seed, work_dir, resume_from, quiet, **training_overrides)
    prediction = trainer.predict(test_tok)
    predicted = np.argmax(prediction.predictions, axis=-1)
    scores = classification_metrics().compute(predictions=predicted, references=prediction.label_ids)
    return {"model": trainer.model, "predictions": predicted,
            "metrics": {"test_accuracy": scores["accuracy"], "test_f1_macro": scores["f1_macro"], **metrics}}


def fit(cfg: ClassifyStage, model, tokenizer, train_tok, seed: int, work_dir: str, resume_from: str | None = None,
        quiet: bool = False, **training_overrides):
    """Fine-tunes the classifier as the config says (early stopping on a dev share of the labeled
    examples when dev_fraction is set); returns the Trainer, holding the trained model, and the
    training metrics."""
    overrides = {"seed": seed, **training_overrides}
    if cfg.training.get("gradual_unfreezing"):
        overrides["ddp_find_unused_parameters"] = True  # frozen groups get no gradients under DDP
    dev_tok = None
    if cfg.dev_fraction:
        train_rows, dev_rows = dev_split_indices(train_tok["label"], cfg.dev_fraction, seed)
        if dev_rows:
            train_tok, dev_tok = train_tok.select(train_rows), train_tok.select(dev_rows)
            # Score the held-out examples after every epoch and end with the best epoch's weights (which
            # needs a checkpoint per epoch; weights only where the caller wanted no resumable checkpoints).
            resumable = overrides.get("save_strategy", cfg.training.get("save_strategy")) != "no"
            overrides.update(eval_strategy="epoch", save_strategy="epoch", save_only_model=not resumable,
                             load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False)
    args = build_training_args(cfg.training, work_dir, **overrides)
    trainer = ULMFiTTrainer(model=model, args=args, train_dataset=train_tok, eval_dataset=dev_tok,
                            data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    if quiet:  # a sweep prints one line per cell instead of Trainer's logs and bars
        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
    result = trainer.train(resume_from_checkpoint=resume_from)
    tokens_per_example = sum(len(ids) for ids in train_tok["input_ids"]) / len(train_tok)
    return trainer, {
        "train_loss": result.training_loss, "train_runtime": result.metrics["train_runtime"],
        "precision": precision(trainer.args),
        "train_tokens_per_second": result.metrics["train_samples_per_second"] * tokens_per_example,
        "dev_examples": 0 if dev_tok is None else len(dev_tok),
        "dev_loss_curve": [round(h["eval_loss"], 4) for h in trainer.state.log_history if "eval_loss" in h],
        "chosen_epoch": _best_epoch(trainer.state)}


def _best_epoch(state) -> int | None:
    # Trainer keeps the best evaluation's step; the log says which epoch ended there. None without a
    # dev split, or when no epoch counted as best (every dev loss NaN): the weights are the last epoch's.
    if state.best_global_step is None:
        return None
    return next(round(h["epoch"]) for h in state.log_history if h.get("step") == state.best_global_step and "eval_loss" in h)


def save_classifier(model, tokenizer, label_names: list[str], folder):
    """Saves the classifier (LoRA merged) and its tokenizer; returns the model as saved."""
    model = merge_lora(model)
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {n: i for i, n in enumerate(label_names)}
    model.save_pretrained(folder)
    save_tokenizer(tokenizer, folder, model.config.max_tokens)
    # (sentence-transformers then reads it as `lm-transfer embed` does: its pooling, its length)
    write_files(folder, model.config.pooling, model.config.max_tokens, hidden_width(model.backbone.config),
                model.config.normalize)
    return model
