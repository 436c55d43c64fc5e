"""Stages 2 and 3: language-model pre-training on a general corpus (`pretrain`) and fine-tuning
on the target domain's text (`lm_finetune`, with discriminative LRs and STLR). Causal LM, or
masked LM for encoder checkpoints. Reports held-out perplexity."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import datasets
from datasets import IterableDataset
from transformers import DataCollatorForLanguageModeling, TrainerCallback

from ..backbones import load_language_model, load_tokenizer, new_language_model, save_tokenizer, tokenizer_source
from ..data import lm_text_splits
from ..lm_data import ShuffledBlocks, StreamBlocks, token_file
from ..errors import RecipeError
from ..masked_lm import score_masked_positions_only
from ..models.classifier import hidden_width
from ..sentence_encoder import language_model_reads, write_files
from ..trainer import ULMFiTTrainer, checkpoint_step
from ..training_args import build_training_args, precision


def run(ctx) -> dict:
    cfg = ctx.config
    # 1. data
    with ctx.state.main_process_first():
        train_texts, valid_texts = lm_text_splits(cfg.data, ctx.seed)
    # 2. tokenizer
    tokenizer = load_tokenizer(tokenizer_source(cfg, f"{ctx.recipe.path}: {ctx.name}")[1])
    # 3. model
    if cfg.init_from:
        model = load_language_model(cfg.init_from, cfg.objective, cfg.model.config)
    else:
        model = new_language_model(cfg.model, tokenizer, cfg.objective, f"{ctx.recipe.path}: {ctx.name}")
    masked = "MaskedLM" in type(model).__name__
    if masked and tokenizer.mask_token is None:
        raise RecipeError(f"{ctx.recipe.path}: {ctx.name}: masked-LM objective but the tokenizer has no mask token")
    if masked and cfg.direction == "backward":
        raise RecipeError(f"{ctx.recipe.path}: {ctx.name}.direction: backward is for causal LMs, this one is masked")
    if cfg.init_from and getattr(model.config, "direction", "forward") != cfg.direction:
        raise RecipeError(f"{ctx.recipe.path}: {ctx.name}.direction: {cfg.direction}, but init_from's LM reads "
                          f"{model.config.direction}; continue it in its own direction")
    model.config.direction = cfg.direction  # saved with the model: classifiers and cards read it
    if masked:  # same loss and gradients; measured on all-MiniLM-L6-v2: 2.3 s per step, not 5.9 s
        score_masked_positions_only(model)
    # 4. tokenize once into token files (cached); cut into blocks: independent shuffled blocks, or for
    # a recurrent model contiguous streams whose hidden state is carried from batch to batch
    carry_state = getattr(model, "is_recurrent", False) if cfg.carry_state is None else cfg.carry_state
    if carry_state and not getattr(model, "is_recurrent", False):
        raise RecipeError(f"{ctx.recipe.path}: {ctx.name}.carry_state: only a recurrent model (awd_lstm) has a "
                          "state to carry")
    args = build_training_args(cfg.training, str(ctx.work_dir), seed=ctx.seed, **stage_overrides(cfg, carry_state))
    with ctx.state.main_process_first():
        # A stream is known by where it comes from (it has no fingerprint); the seed does not change it.
        streamed = json.dumps(dataclasses.asdict(cfg.data), sort_keys=True) if cfg.data.streaming else None
        tokens = {split: token_file(texts, tokenizer, cfg.data.text_column, masked, token_cache(texts, ctx.work_dir),
                                    split, cfg.tokenize_processes, identity=streamed,
                                    backward=cfg.direction == "backward")
                  for split, texts in (("train", train_texts), ("validation", valid_texts))}
    if carry_state:
        processes = args.world_size
        blocks = {"train": StreamBlocks(tokens["train"], args.per_device_train_batch_size * processes, cfg.block_size),
                  "validation": StreamBlocks(tokens["validation"], _eval_rows(tokens["validation"], args, cfg.block_size),
                                             cfg.block_size)}
    else:
        blocks = {split: ShuffledBlocks(ids, cfg.block_size) for split, ids in tokens.items()}
    # 5. trainer
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=masked, mlm_probability=cfg.mlm_probability)
    trainer = ULMFiTTrainer(model=model, args=args, train_dataset=blocks["train"], eval_dataset=blocks["validation"],
                            data_collator=collator, processing_class=tokenizer, carry_state=carry_state,
                            callbacks=[elapsed := ElapsedSeconds()])
    # A continued LM is scored on the new text first, so the gain from fine-tuning is measured.
    before = trainer.evaluate()["eval_loss"] if cfg.init_from else None
    resume = ctx.resume_checkpoint()
    result = trainer.train(resume_from_checkpoint=resume)
    evaluation = _final_evaluation(trainer)
    # 6. save what goes to the Hub: weights, config, tokenizer (not Trainer's training_args.bin)
    if ctx.state.is_main_process:
        trainer.model.save_pretrained(ctx.partial_dir)
        length = trained_length(tokenizer.model_max_length, cfg.block_size, carry_state)
        save_tokenizer(tokenizer, ctx.partial_dir, length)
        if cfg.direction == "forward":  # (a backward LM reads reversed text, which AutoModel alone would not)
            write_files(ctx.partial_dir, "mean", language_model_reads(getattr(model, "is_recurrent", False), length),
                        hidden_width(model.config))
    tokens_per_block = len(tokens["train"]) / len(blocks["train"])
    steps_run = trainer.state.global_step - (checkpoint_step(resume) if resume else 0)  # (a resumed run: its own)
    trained_tokens = steps_run * args.train_batch_size * args.gradient_accumulation_steps \
        * args.world_size * tokens_per_block
    trained_seconds = elapsed.at_step.get(trainer.state.global_step) or result.metrics["train_runtime"]
    return {
        "objective": "masked" if masked else "causal",
        "direction": cfg.direction,
        "eval_loss": evaluation["eval_loss"],
        "eval_perplexity": math.exp(min(evaluation["eval_loss"], 50)),
        "eval_perplexity_before_training": None if before is None else math.exp(min(before, 50)),
        "train_loss": result.training_loss,
        "train_loss_curve": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
        # Held-out perplexity against training time (eval_strategy steps or epoch), for comparing models by cost.
        # (one point a step: the evaluation after training repeats the last one's step, as a resumed run's does)
        "eval_curve": list({h["step"]: {"step": h["step"], "seconds": elapsed.at_step.get(h["step"]),
                                        "perplexity": round(math.exp(min(h["eval_loss"], 50)), 2)}
                            for h in trainer.state.log_history if "eval_loss" in h}.values()),
        "train_blocks": len(blocks["train"]),
        "train_tokens": len(tokens["train"]),
        "carry_state": carry_state,
        "train_runtime": result.metrics["train_runtime"],
        "precision": precision(trainer.args),
        # Training throughput: the tokens of every optimizer step over the time spent training, evaluations not
        # counted (Trainer's train_runtime counts the evaluations run during training).
        "train_tokens_per_second": trained_tokens / max(trained_seconds, 1e-9),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _final_evaluation(trainer) -> dict:
    """The trained model's evaluation: the one Trainer ran at the last step (eval_strategy epoch or
    steps often ends there; ~4 s of the demo's LM) when the model it scored is the one kept."""
    last = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if last and last.get("step") == trainer.state.global_step and not trainer.args.load_best_model_at_end:
        return last
    return trainer.evaluate()


# What a tokenizer says when nothing bounds it (transformers' own "very large" is 1e30; ours, 1e6).
UNBOUNDED = 1_000_000


def trained_length(known: int, block_size: int, carry_state: bool) -> int:
    """The tokenizer's model_max_length after LM training, so `truncation=True` stops where the model was
    trained: the blocks' length, or a checkpoint's own longer one. A model trained on a carried stream
    (truncated BPTT) read it whole: unbounded."""
    if carry_state:
        return known
    return max(block_size, known) if known < UNBOUNDED else block_size


class ElapsedSeconds(TrainerCallback):
    """The seconds spent training up to each evaluation, evaluations not counted (`at_step`; 0 for
    an evaluation before training)."""

    def __init__(self):
        self.started = self.last_step = None
        self.evaluating = 0.0
        self.at_step: dict[int, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_step = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.last_step = time.perf_counter()

    def on_evaluate(self, args, state, control, **kwargs):
        if self.started is None:
            self.at_step[state.global_step] = 0.0
            return
        self.at_step[state.global_step] = round(self.last_step - self.started - self.evaluating, 1)
        now = time.perf_counter()
        self.evaluating += now - self.last_step
        self.last_step = now


def stage_overrides(cfg, carry_state: bool) -> dict:
    overrides = {}
    if cfg.training.get("gradual_unfreezing"):
        overrides["ddp_find_unused_parameters"] = True  # frozen groups get no gradients under DDP
    if carry_state:
        overrides["train_sampling_strategy"] = "sequential"  # the streams' order is the point
    return overrides


def _eval_rows(tokens, args, bptt: int) -> int:
    """Streams for evaluation: the eval batch on every process, fewer for a short held-out text
    (each stream at least one bptt piece), a multiple of the processes so that each gets whole batches."""
    processes = args.world_size
    rows = min(args.per_device_eval_batch_size, max(1, len(tokens) // (processes * bptt)))
    return rows * processes


def token_cache(texts, work_dir) -> Path:
    """Token files live beside the dataset's own cache files (so every stage and sweep arm reading
    the same text reuses them), a stream's in the `datasets` cache, in-memory data's in the stage's
    work folder."""
    if isinstance(texts, IterableDataset):
        return Path(datasets.config.HF_DATASETS_CACHE) / "lm-transfer-tokens"
    files = getattr(texts, "cache_files", None)
    return Path(files[0]["filename"]).parent / "lm-transfer-tokens" if files else Path(work_dir) / "tokens"
