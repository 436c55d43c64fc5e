"""What the one training path costs: an LM stage's Trainer (ULMFiTTrainer: its optimizer groups, STLR,
carried state, callbacks, logging) against a minimal hand-written PyTorch loop doing the same work on
the same model, batches, data and threads, in one process, alternating, best of `--repeats`.

  .venv/bin/python benchmarks/trainer_vs_loop.py --tokenizer runs/imdb-small/tokenizer

Reports training tokens/s of each and their ratio (Trainer / loop; 1.0 means no overhead) for the
AWD-LSTM (bptt 70, state carried) and the Llama (blocks of 128) of recipes/imdb/awd_lstm.yaml and
small.yaml, on gutenberg text.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import torch

CORPUS = "../shared/data/gutenberg"
MODELS = {
    "awd_lstm": ({"backbone": "awd_lstm", "config": {"embedding_size": 256, "hidden_size": 576, "num_hidden_layers": 3}},
                 70, 64),
    "llama": ({"backbone": "transformer", "model_type": "llama",
               "config": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
                          "num_key_value_heads": 4, "max_position_embeddings": 128}}, 128, 32),
}
TRAINING = {"learning_rate": 1e-3, "adam_beta1": 0.7, "adam_beta2": 0.99, "weight_decay": 0.01, "max_grad_norm": 0.4,
            "slanted_triangular_lr": True, "bf16": True, "save_strategy": "no", "logging_steps": 10,
            "disable_tqdm": True, "report_to": "none"}


def _model(name: str, tokenizer):
    from pipelines.backbones import new_language_model
    from pipelines.config import ModelConfig

    torch.manual_seed(0)
    return new_language_model(ModelConfig(**MODELS[name][0]), tokenizer, "causal", "bench")


def with_trainer(name, tokenizer, tokens, steps) -> float:
    from transformers import DataCollatorForLanguageModeling

    from pipelines.lm_data import ShuffledBlocks, StreamBlocks
    from pipelines.trainer import ULMFiTTrainer
    from pipelines.training_args import build_training_args

    _, block, batch = MODELS[name]
    model = _model(name, tokenizer)
    carry = getattr(model, "is_recurrent", False)
    data = StreamBlocks(tokens, batch, block) if carry else ShuffledBlocks(tokens, block)
    with tempfile.TemporaryDirectory() as out:
        args = build_training_args({**TRAINING, "max_steps": steps, "per_device_train_batch_size": batch}, out, seed=0,
                                   train_sampling_strategy="sequential" if carry else "random")
        trainer = ULMFiTTrainer(model=model, args=args, train_dataset=data, carry_state=carry,
                                data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
        started = time.perf_counter()
        trainer.train()
        return steps * batch * block / (time.perf_counter() - started)


def with_loop(name, tokenizer, tokens, steps) -> float:
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

    from pipelines.lm_data import ShuffledBlocks, StreamBlocks
    from pipelines.ulmfit import stlr_scheduler

    _, block, batch = MODELS[name]
    model = _model(name, tokenizer).train()
    carry = getattr(model, "is_recurrent", False)
    data = StreamBlocks(tokens, batch, block) if carry else ShuffledBlocks(tokens, block)
    sampler = SequentialSampler(data) if carry else RandomSampler(data, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(data, batch_size=batch, sampler=sampler, collate_fn=lambda items: torch.stack(
        [item["input_ids"] for item in items]))
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": TRAINING["weight_decay"]},
                                   {"params": rest, "weight_decay": 0.0}], lr=TRAINING["learning_rate"],
                                  betas=(TRAINING["adam_beta1"], TRAINING["adam_beta2"]))
    schedule = stlr_scheduler(optimizer, steps, 0.1, 32)
    state, done = None, 0
    started = time.perf_counter()
    while done < steps:
        for ids in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(input_ids=ids, labels=ids, **({"state": state} if carry else {}))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), TRAINING["max_grad_norm"])
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            if carry:
                state = tuple((h.detach(), c.detach()) for h, c in out.state)
            done += 1
            if done == steps:
                break
    return steps * batch * block / (time.perf_counter() - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from datasets import load_dataset

    from pipelines.backbones import load_tokenizer
    from pipelines.lm_data import token_file
    from pipelines.training_args import cpu_has_native_bf16

    torch.set_flush_denormal(True)  # as the runner does
    if not cpu_has_native_bf16():
        TRAINING["bf16"] = False
    tokenizer = load_tokenizer(args.tokenizer)
    texts = load_dataset(CORPUS, split="train").select(range(3000))
    with tempfile.TemporaryDirectory() as cache:
        tokens = token_file(texts, tokenizer, "text", False, cache, "train")
        rows = []
        for name in args.models:
            best = {"trainer": 0.0, "loop": 0.0}
            for _ in range(args.repeats):  # alternating, so drift in the machine's speed hits both
                best["trainer"] = max(best["trainer"], with_trainer(name, tokenizer, tokens, args.steps))
                best["loop"] = max(best["loop"], with_loop(name, tokenizer, tokens, args.steps))
            rows.append({"model": name, "steps": args.steps, "trainer_tokens_per_second": round(best["trainer"]),
                         "loop_tokens_per_second": round(best["loop"]), "ratio": round(best["trainer"] / best["loop"], 3),
                         "threads": torch.get_num_threads(), "bf16": TRAINING["bf16"]})
            print(rows[-1], flush=True)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
