"""Stages 2 and 3: language-model pre-training on a general corpus (`pretrain`) and fine-tuning
on the target domain's text (`lm_finetune`, with discriminative LRs and STLR). Causal LM, or
masked LM for encoder checkpoints. Reports held-out perplexity."""

from __future__ import annotations

import math
from functools import partial

from transformers import DataCollatorForLanguageModeling

from ..backbones import load_language_model, load_tokenizer, new_language_model, tokenizer_source
from ..data import group_into_blocks, lm_text_splits
from ..errors import RecipeError
from ..masked_lm import score_masked_positions_only
from ..trainer import ULMFiTTrainer
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
        model = load_language_model(cfg.init_from, cfg.objective)
    else:
        model = new_language_model(cfg.model, tokenizer, cfg.objective, f"{ctx.recipe.path}: {ctx.name}")
    masked = "MaskedLM" in type(model).__name__
    if masked and tokenizer.mask_token is None:
        raise RecipeError(f"{ctx.recipe.path}: {ctx.name}: masked-LM objective but the tokenizer has no mask token")
    if masked:  # same loss and gradients; measured on all-MiniLM-L6-v2: 2.3 s per step, not 5.9 s
        score_masked_positions_only(model)
    # 4. tokenize and cut into blocks; documents are separated by EOS (causal) so the model sees boundaries
    eos = [] if masked or tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    column = cfg.data.text_column

    def tokenize(batch):
        ids = tokenizer(batch[column], add_special_tokens=masked)["input_ids"]
        return {"input_ids": [seq + eos for seq in ids]}

    with ctx.state.main_process_first():
        blocks = {}
        for split, texts in (("train", train_texts), ("validation", valid_texts)):
            tokens = texts.map(tokenize, batched=True, remove_columns=texts.column_names, desc=f"tokenizing {split}")
            blocks[split] = tokens.map(partial(group_into_blocks, block_size=cfg.block_size), batched=True,
                                       batch_size=1000, desc=f"blocks of {cfg.block_size} ({split})")
    # 5. trainer
    args = build_training_args(cfg.training, str(ctx.work_dir), seed=ctx.seed,
                               **({"ddp_find_unused_parameters": True} if cfg.training.get("gradual_unfreezing") else {}))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=masked, mlm_probability=cfg.mlm_probability)
    trainer = ULMFiTTrainer(model=model, args=args, train_dataset=blocks["train"], eval_dataset=blocks["validation"],
                            data_collator=collator, processing_class=tokenizer)
    # A continued LM is scored on the new text first, so the gain from fine-tuning is measured.
    before = trainer.evaluate()["eval_loss"] if cfg.init_from else None
    result = trainer.train(resume_from_checkpoint=ctx.resume_checkpoint())
    evaluation = trainer.evaluate()
    # 6. save what goes to the Hub: weights, config, tokenizer (not Trainer's training_args.bin)
    if ctx.state.is_main_process:
        trainer.model.save_pretrained(ctx.partial_dir)
        tokenizer.save_pretrained(ctx.partial_dir)
    tokens_per_block = sum(len(b) for b in blocks["train"]["input_ids"][:1000]) / max(1, min(1000, len(blocks["train"])))
    return {
        "objective": "masked" if masked else "causal",
        "eval_loss": evaluation["eval_loss"],
        "eval_perplexity": math.exp(min(evaluation["eval_loss"], 50)),
        "eval_perplexity_before_training": None if before is None else math.exp(min(before, 50)),
        "train_loss": result.training_loss,
        "train_loss_curve": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
        "train_blocks": len(blocks["train"]),
        "train_tokens": int(len(blocks["train"]) * tokens_per_block),
        "train_runtime": result.metrics["train_runtime"],
        "precision": precision(trainer.args),
        "train_tokens_per_second": result.metrics["train_samples_per_second"] * tokens_per_block,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
