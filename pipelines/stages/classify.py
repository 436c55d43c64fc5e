"""Stage 4: a sequence classifier built from the language model (its body reused, a new concat-pooling
head), fine-tuned with the ULMFiT techniques on few labels, evaluated on the test split."""

from __future__ import annotations

import numpy as np
from transformers import DataCollatorWithPadding

from ..backbones import load_body, load_tokenizer, new_language_model, random_body_like
from ..data import classification_splits
from ..errors import RecipeError
from ..metrics import classification_metrics
from ..models.classifier import TransferClassifier
from ..peft_adapters import apply_lora, merge_lora
from ..trainer import ULMFiTTrainer
from ..training_args import build_training_args

# ULMFiT's bptt for the recurrent backbone; transformers read chunks of their own context size.
RECURRENT_BPTT = 70


def run(ctx) -> dict:
    cfg = ctx.config
    # 1. data: the few labeled examples (stratified, seeded) and the test split
    with ctx.state.main_process_first():
        train, test, label_names = classification_splits(cfg.data, cfg.examples_per_class, ctx.seed)
    # 2. tokenizer
    source = cfg.model.tokenizer or cfg.init_from or cfg.model.checkpoint
    if source is None:
        raise RecipeError(f"{ctx.recipe.path}: {ctx.name}.model.tokenizer: needed without init_from")
    tokenizer = load_tokenizer(source)

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=cfg.max_length)

    with ctx.state.main_process_first():
        train_tok = train.map(tokenize, batched=True, remove_columns=["text"], desc="tokenizing labeled examples")
        test_tok = test.map(tokenize, batched=True, remove_columns=["text"], desc="tokenizing test examples")
    # 3. model: the LM's body, or a random one of the recipe's architecture
    if cfg.init_from:
        body = load_body(cfg.init_from)
    else:
        body = random_body_like(_body_of(new_language_model(cfg.model, tokenizer, "causal", ctx.name)))
    transferred = _train_and_test(ctx, _classifier(cfg, body, label_names, tokenizer), tokenizer, train_tok, test_tok,
                                  str(ctx.work_dir), resume=True)
    metrics = {**transferred["metrics"], "train_examples": len(train), "test_examples": len(test),
               "labels": label_names, "examples_per_class": cfg.examples_per_class}
    # 4. save the (LoRA-merged) classifier with its tokenizer
    if ctx.state.is_main_process:
        model = merge_lora(transferred["model"])
        model.config.id2label = dict(enumerate(label_names))
        model.config.label2id = {n: i for i, n in enumerate(label_names)}
        model.save_pretrained(ctx.partial_dir)
        tokenizer.save_pretrained(ctx.partial_dir)
    # 5. the same classifier from random init on the same labels, for comparison
    if cfg.compare_scratch:
        scratch = _train_and_test(ctx, _classifier(cfg, random_body_like(body), label_names, tokenizer), tokenizer,
                                  train_tok, test_tok, str(ctx.work_dir / "scratch"), resume=False, scratch=True)
        metrics["scratch"] = scratch["metrics"]
    return metrics


def _body_of(lm):
    return getattr(lm, lm.base_model_prefix)


def _classifier(cfg, body, label_names, tokenizer) -> TransferClassifier:
    recurrent = getattr(body, "is_recurrent", False)
    context = getattr(body.config, "max_position_embeddings", None) or cfg.max_length
    bptt = cfg.bptt or (RECURRENT_BPTT if recurrent else min(context, cfg.max_length))
    model = TransferClassifier.from_body(
        body, num_labels=len(label_names), pooling=cfg.pooling, head_hidden=cfg.head_hidden,
        head_dropout=cfg.head_dropout, bptt=bptt, max_tokens=cfg.max_length, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if cfg.peft is not None:
        model = apply_lora(model, cfg.peft)
    return model


def _train_and_test(ctx, model, tokenizer, train_tok, test_tok, work_dir, resume, scratch=False) -> dict:
    cfg = ctx.config
    overrides = {"seed": ctx.seed}
    if scratch:  # transfer techniques mean nothing for random weights: plain fine-tuning
        overrides.update(gradual_unfreezing=False, discriminative_lr_factor=None)
    if cfg.training.get("gradual_unfreezing") and not scratch:
        overrides["ddp_find_unused_parameters"] = True  # frozen groups get no gradients under DDP
    args = build_training_args(cfg.training, work_dir, **overrides)
    trainer = ULMFiTTrainer(model=model, args=args, train_dataset=train_tok,
                            data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    result = trainer.train(resume_from_checkpoint=ctx.resume_checkpoint() if resume else None)
    prediction = trainer.predict(test_tok)
    predicted = np.argmax(prediction.predictions, axis=-1)
    scores = classification_metrics().compute(predictions=predicted, references=prediction.label_ids)
    tokens_per_example = sum(len(ids) for ids in train_tok["input_ids"]) / len(train_tok)
    return {"model": trainer.model, "metrics": {
        "test_accuracy": scores["accuracy"], "test_f1_macro": scores["f1_macro"],
        "train_loss": result.training_loss, "train_runtime": result.metrics["train_runtime"],
        "train_tokens_per_second": result.metrics["train_samples_per_second"] * tokens_per_example}}
