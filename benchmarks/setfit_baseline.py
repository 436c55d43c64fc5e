"""SetFit 1.2 on a sweep recipe's cells: the few-shot baseline users would pick instead of lm-transfer.

For each (examples per class, seed) it trains SetFit on the same labeled examples the sweep's arms
see (`pipelines.data.stratified_indices`, so the `labeled_subset` hashes match results.jsonl) from
the recipe's `sweep.checkpoint`, and scores it on the sweep's test split. The body's contrastive
training is capped at --max-steps (16 by default: on 2 CPU cores a step of 16 pairs of 256-token
texts took 7-16 s). One JSON line per run on stdout; wall and CPU seconds per run include
loading the checkpoint and predicting the test split, as a sweep cell's `cell_seconds` does.
(`--output FILE` appends the lines to FILE too; stdout also carries SetFit's training logs.)

    pip install -e ".[setfit]"
    python benchmarks/setfit_baseline.py recipes/imdb/checkpoint.yaml [--per-class 8 64] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

# SetFit asks the Hub for dataset metadata while training; offline that costs ~25 s of retries per run.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.backbones import resolve_checkpoint  # noqa: E402
from pipelines.config import load_recipe  # noqa: E402
from pipelines.data import classification_splits, stratified_indices  # noqa: E402
from pipelines.metrics import classification_metrics  # noqa: E402
from pipelines.sweep_cells import labeled_subset_id  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("--per-class", type=int, nargs="+", help="default: the recipe's sweep.examples_per_class")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the recipe's sweep.seeds")
    parser.add_argument("--max-steps", type=int, default=16, help="body training steps (contrastive pairs)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--output", help="also append the JSON lines to this file (stdout carries SetFit's logs too)")
    args = parser.parse_args(argv)
    try:
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError:
        sys.exit("setfit is not installed: pip install -e '.[setfit]'")

    config = load_recipe(args.recipe).config
    sweep = config.sweep
    if not sweep.checkpoint:
        sys.exit(f"{args.recipe}: sweep.checkpoint is not set (SetFit needs a sentence encoder)")
    per_class_budgets = args.per_class or sweep.examples_per_class
    if not per_class_budgets:
        sys.exit(f"{args.recipe}: the sweep gives totals, not examples per class: pass --per-class")
    if args.output and os.path.basename(args.output) == "results.jsonl":
        sys.exit(f"--output {args.output}: that is a sweep's own file, whose rows SetFit's do not match; "
                 "write to another file")
    data = replace(config.classify.data, max_test_examples=sweep.test_examples)
    train, test, label_names = classification_splits(data, None, config.run.seed)  # the sweep's own test split
    counts = np.bincount(np.asarray(train["label"]), minlength=len(label_names))
    if max(per_class_budgets) > counts.min():
        # stratified_indices would quietly take fewer, and the runs would not pair with the sweep's
        sys.exit(f"{max(per_class_budgets)} examples per class, but the smallest class has {counts.min()}")
    checkpoint = resolve_checkpoint(sweep.checkpoint)
    metrics = classification_metrics()

    for per_class in per_class_budgets:
        for seed in args.seeds or sweep.seeds:
            indices = stratified_indices(train["label"], per_class, seed)
            wall, cpu = time.time(), time.process_time()
            model = SetFitModel.from_pretrained(checkpoint)
            with tempfile.TemporaryDirectory(prefix="setfit-") as scratch:
                # save_strategy "no": SetFit otherwise writes checkpoints into ./checkpoints
                training = TrainingArguments(batch_size=args.batch_size, num_epochs=1, max_steps=args.max_steps,
                                             seed=seed, report_to="none", save_strategy="no", output_dir=scratch)
                Trainer(model=model, args=training, train_dataset=train.select(indices)).train()
            train_wall = time.time() - wall
            predicted = model.predict(list(test["text"]), as_numpy=True)
            scores = metrics.compute(predictions=predicted.tolist(), references=list(test["label"]))
            row = json.dumps({
                "arm": "setfit", "checkpoint": sweep.checkpoint, "examples_per_class": per_class, "seed": seed,
                "labeled_subset": labeled_subset_id(indices),
                "accuracy": scores["accuracy"], "f1_macro": scores["f1_macro"], "test_examples": len(test),
                "max_steps": args.max_steps, "train_seconds": round(train_wall, 2),
                "cell_seconds": round(time.time() - wall, 2), "cell_cpu_seconds": round(time.process_time() - cpu, 2),
            })
            print(row, flush=True)
            if args.output:
                with open(args.output, "a") as out:
                    out.write(row + "\n")


if __name__ == "__main__":
    main()
