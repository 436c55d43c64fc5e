"""recipes/imdb/ulmfit.yaml end to end, every stage and a two-budget sweep (100 and 200 labels), with
overrides that shrink training steps and evaluation sets, never the recipe's models or techniques.
It prints each language model's perplexity and tokens/s and the sweep's cells.

Two sizes:
  cpu  proves the recipe at WikiText-103's scale on 2 CPU cores: the general corpus is
       ../shared/data/gutenberg repeated 8 times (123M tokens of its 30k BPE; the tokenizer and
       the LM stages read all of it), a few optimizer steps per stage (30 minutes on 2 cores):
         .venv/bin/python benchmarks/ulmfit_check.py run --size cpu --repeat 8
  gpu  sized for one H200-class GPU with no network, under 10 minutes, from a bundle of at most
       64 MiB that `prepare` writes (text as zstd-compressed Parquet; see below):
         .venv/bin/python benchmarks/ulmfit_check.py prepare --out shared/ulmfit-check   # here
         python3 benchmarks/ulmfit_check.py run --size gpu --bundle shared/ulmfit-check   # there

Why compressed text and not pre-tokenized arrays: the recipe's own tokenizer stage then runs there
too, and zstd Parquet costs less than uint16 token ids would (prepare prints bytes per word; a
30k BPE vocabulary spends about 1.3 tokens, 2.6 bytes as uint16, per word).
`--size tiny` runs the gpu size's path at a few steps on CPU, from a bundle: the check of this script.
On a machine without network, lm-transfer runs from the checkout (PYTHONPATH, which `run` sets);
what its image lacks of pyproject.toml's dependencies travels as Python 3.12 wheels installed with
`pip install --no-index --target` (for the H200 image of 2026-11: datasets, evaluate, omegaconf,
antlr4-python3-runtime, dill, multiprocess).

The run's folder (runs/ulmfit-check-<size>) keeps every stage's metrics.json; the summary is
printed and written to <folder>/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RECIPE = "recipes/imdb/ulmfit.yaml"
# Bundle contents for the gpu size: (dataset, split, rows kept); None = all rows.
BUNDLE = {"general": [("gutenberg", "train", None), ("gutenberg", "validation", 300)],
          "imdb": [("imdb", "train", None), ("imdb", "test", 5000), ("imdb", "unsupervised", 30000)]}
BUNDLE_LIMIT = 60 * 2**20  # (the device takes 64 MiB with the working tree)
SIZES = {
    # Optimizer steps per LM stage (batch 64 x 70 tokens), for the classifier on all labels and for
    # each sweep cell (None: the recipe's epochs); evaluation-set sizes; ulmfit_semi's unlabeled sample.
    "cpu": {"lm_steps": 20, "classify_steps": 5, "cell_steps": 3, "test": 100, "general_validation": 100,
            "imdb_validation_fraction": 0.002, "unlabeled": 200},
    "gpu": {"lm_steps": 1000, "classify_steps": 300, "cell_steps": None, "test": 2000, "general_validation": None,
            "imdb_validation_fraction": 0.02, "unlabeled": 4000},
    "tiny": {"lm_steps": 3, "classify_steps": 2, "cell_steps": 2, "test": 40, "general_validation": 20,
             "imdb_validation_fraction": 0.002, "unlabeled": 40},
}


def prepare(out: Path, source: Path) -> None:
    """The gpu size's data: a seeded-free, deterministic subset of gutenberg and IMDb (first rows;
    IMDb's test split stratified by taking every n-th row of its label-sorted order), zstd Parquet."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for name, parts in BUNDLE.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for dataset, split, rows in parts:
            table = pq.read_table(source / dataset / f"{split}.parquet")
            if rows is not None and rows < table.num_rows:
                if "label" in table.column_names and split == "test":  # both classes, evenly
                    order = pc.sort_indices(table, sort_keys=[("label", "ascending")])
                    table = table.take(order).take(list(range(0, table.num_rows, table.num_rows // rows))[:rows])
                else:
                    table = table.slice(0, rows)
            pq.write_table(table, folder / f"{split}.parquet", compression="zstd", compression_level=19)
        readme = source / parts[0][0] / "README.md"  # the split layout and the label names
        (folder / "README.md").write_text(readme.read_text())
    words = sum(len(t.split()) for f in sorted(out.rglob("*.parquet")) for t in pq.read_table(f, columns=["text"])["text"].to_pylist())
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{words / 1e6:.1f}M words, {size / words:.2f} bytes per word")
    print(f"{out}: {size / 2**20:.1f} MiB ({', '.join(str(f.relative_to(out)) for f in sorted(out.rglob('*.parquet')))})")
    if size > BUNDLE_LIMIT:
        raise SystemExit(f"{out}: {size / 2**20:.1f} MiB is over {BUNDLE_LIMIT / 2**20:.0f} MiB; keep fewer rows")


def general_corpus(source: Path, repeat: int, validation_rows: int | None, work: Path) -> Path:
    """gutenberg in the Hub's layout with its train split repeated `repeat` times (links to one
    file, no copy) and the first `validation_rows` of its validation split."""
    if repeat == 1 and validation_rows is None:
        return source
    import pyarrow.parquet as pq

    folder = work / f"general-x{repeat}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(repeat):
        link = folder / f"train-{i:05d}-of-{repeat:05d}.parquet"
        if not link.exists():
            link.symlink_to((source / "train.parquet").resolve())
    validation = pq.read_table(source / "validation.parquet")
    if validation_rows is not None:
        validation = validation.slice(0, validation_rows)
    pq.write_table(validation, folder / "validation-00000-of-00001.parquet")
    return folder


def overrides(size: dict, general: Path, imdb: Path, output: Path) -> list[str]:
    # Each LM stage still scores its held-out text once it has trained; no checkpoints.
    lm = ['training.eval_strategy="no"', 'training.save_strategy="no"']
    steps = [f"{stage}.training.max_steps={size['lm_steps']}" for stage in ("pretrain", "lm_finetune")]
    # Gradual unfreezing in a few steps: every layer group is unfrozen before the last step.
    steps += [f"classify.training.max_steps={size['classify_steps']}",
              f"classify.training.unfreeze_every_steps={max(1, size['classify_steps'] // 5)}"]
    cells = (["sweep.recipe.classify.training.max_steps=-1", "sweep.recipe.classify.training.unfreeze_every_steps=null"]
             if size["cell_steps"] is None else
             [f"sweep.recipe.classify.training.max_steps={size['cell_steps']}",
              f"sweep.recipe.classify.training.unfreeze_every_steps={max(1, size['cell_steps'] // 5)}"])
    return [f"run.output_dir={output}", f"data.path={imdb}", f"data.max_test_examples={size['test']}",
            f"tokenizer.data.path={general}", "tokenizer.data.name=null",
            f"pretrain.data.path={general}", "pretrain.data.name=null",
            f"lm_finetune.data.validation_fraction={size['imdb_validation_fraction']}",
            *(f"{stage}.{o}" for stage in ("pretrain", "lm_finetune") for o in lm),
            'classify.training.save_strategy="no"', *steps, *cells,
            "sweep.total_examples=[100,200]", "sweep.seeds=[0]", f"sweep.test_examples={size['test']}",
            f"sweep.arm_definitions.ulmfit_semi.self_training.unlabeled={size['unlabeled']}"]


def launch(command: str, args: list[str], log: Path) -> float:
    """`lm-transfer COMMAND RECIPE ARGS` under accelerate launch, as `make run` does (all cores)."""
    import torch

    processes = max(1, torch.cuda.device_count())
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                *(["--multi_gpu"] if processes > 1 else []),
                "--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // processes))]
    started = time.time()
    with open(log, "w") as out:
        print(f"$ lm-transfer {command} {RECIPE} {' '.join(args)}   (log: {log})", flush=True)
        done = subprocess.run([*launcher, "-m", "pipelines", command, RECIPE, *args], cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        print(log.read_text()[-4000:])
        raise SystemExit(f"lm-transfer {command} failed (exit {done.returncode}); log: {log}")
    return time.time() - started


def summary(output: Path, walls: dict) -> dict:
    lms = []
    for metrics_file in sorted(output.rglob("metrics.json")):
        m = json.loads(metrics_file.read_text())
        stage = m.get("lm_transfer", {}).get("stage")
        if stage in ("pretrain", "lm_finetune") and "models" not in metrics_file.parts:
            lms.append({"folder": str(metrics_file.parent.relative_to(output)), "stage": stage,
                        "direction": m.get("direction", "forward"), "perplexity": round(m["eval_perplexity"], 1),
                        "train_tokens_per_second": round(m["train_tokens_per_second"]),
                        "stage_seconds": round(m.get("stage_wall_seconds", 0))})
    classifier = json.loads((output / "classifier" / "metrics.json").read_text())
    cells = [json.loads(line) for line in (output / "label-efficiency" / "results.jsonl").read_text().splitlines()]
    return {"wall_seconds": walls, "language_models": lms,
            "classifier": {"test_accuracy": classifier["test_accuracy"], "test_examples": classifier["test_examples"],
                           "train_examples": classifier["train_examples"]},
            "cells": [{k: c.get(k) for k in ("arm", "train_examples", "seed", "accuracy", "member_accuracy",
                                             "train_seconds", "cell_seconds")} for c in cells]}


H200_BF16_FLOPS = 790e12  # a dense bf16 matrix product, measured on the device this project may borrow
FULL_EPOCHS = {"pretrain": 10, "lm_finetune": 10, "classify": 5}  # recipes/imdb/ulmfit.yaml


def projection(output: Path, repeat: int, held_out: float) -> dict:
    """The full recipe's training (both directions' LMs and classifiers; the sweep not counted) from
    this run: its corpora's token counts (gutenberg x8 standing in for WikiText-103's 103M words),
    the recipe's epochs, the measured CPU tokens/s, and 6 x parameters FLOPs per trained token on a GPU
    at a given share of its bf16 peak (an LSTM at batch 64 uses little of it: steps are sequential)."""
    metrics = {stage: json.loads((output / stage / "metrics.json").read_text()) for stage in ("pretrain", "lm_finetune")}
    classifier = json.loads((output / "classifier" / "metrics.json").read_text())
    if repeat != 8:
        print(f"(projection from gutenberg x{repeat}: the full recipe's WikiText-103 is about gutenberg x8)")
    reviews = 75000  # IMDb train + unsupervised: the LM fine-tuning text
    tokens = {"pretrain": metrics["pretrain"]["train_tokens"] * 8 / repeat * FULL_EPOCHS["pretrain"] * 2,
              "lm_finetune": metrics["lm_finetune"]["train_tokens"] / (1 - held_out) * FULL_EPOCHS["lm_finetune"] * 2,
              # 25,000 labeled reviews at the LM text's mean tokens per review (under max_length 1400)
              "classify": 25000 * metrics["lm_finetune"]["train_tokens"] / reviews * FULL_EPOCHS["classify"] * 2}
    rates = {"pretrain": metrics["pretrain"]["train_tokens_per_second"],
             "lm_finetune": metrics["lm_finetune"]["train_tokens_per_second"],
             "classify": classifier["train_tokens_per_second"]}
    flops = {stage: 6 * metrics["pretrain"]["parameters"] * n for stage, n in tokens.items()}
    return {"tokens": {k: round(v) for k, v in tokens.items()},
            "cpu_hours": {k: round(tokens[k] / rates[k] / 3600, 1) for k in tokens},
            "flops": {k: float(f"{v:.3g}") for k, v in flops.items()},
            "gpu_hours_at_share_of_peak": {share: round(sum(flops.values()) / (H200_BF16_FLOPS * share) / 3600, 2)
                                           for share in (0.05, 0.2)}}


def print_summary(result: dict) -> None:
    print("\nlanguage models (held-out perplexity, training tokens/s, stage wall time):")
    for lm in result["language_models"]:
        print(f"  {lm['folder']:<55} {lm['direction']:<8} ppl {lm['perplexity']:>9,.1f}  "
              f"{lm['train_tokens_per_second']:>8,} tok/s  {lm['stage_seconds']:>6,} s")
    c = result["classifier"]
    print(f"classifier on all {c['train_examples']:,} labels: {100 * c['test_accuracy']:.1f} % on {c['test_examples']:,} test reviews")
    print("sweep cells (labels, arm, accuracy):")
    for cell in result["cells"]:
        members = cell.get("member_accuracy")
        extra = f"  members {', '.join(f'{k} {100 * v:.1f} %' for k, v in members.items())}" if members else ""
        print(f"  {cell['train_examples']:>4}  {cell['arm']:<14} {100 * cell['accuracy']:5.1f} %  "
              f"({cell['cell_seconds']:,.0f} s){extra}")
    print("wall seconds:", result["wall_seconds"])
    if "projection" in result:
        print("projected full recipe (both directions, sweep not counted):", json.dumps(result["projection"], indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write the gpu size's data bundle")
    prep.add_argument("--out", type=Path, default=ROOT / "shared" / "ulmfit-check")
    prep.add_argument("--source", type=Path, default=SHARED)
    run = sub.add_parser("run", help="run the recipe shrunk and print what it measured")
    run.add_argument("--size", choices=sorted(SIZES), required=True)
    run.add_argument("--bundle", type=Path, help="a folder `prepare` wrote (default: ../shared/data)")
    run.add_argument("--repeat", type=int, default=1, help="the general corpus's train split, this many times")
    run.add_argument("--output", type=Path, help="default: runs/ulmfit-check-<size>")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.out, args.source)
        return 0
    size = SIZES[args.size]
    output = (args.output or ROOT / "runs" / f"ulmfit-check-{args.size}").resolve()
    output.mkdir(parents=True, exist_ok=True)
    general_source, imdb = ((args.bundle / "general", args.bundle / "imdb") if args.bundle
                            else (SHARED / "gutenberg", SHARED / "imdb"))
    general = general_corpus(general_source.resolve(), args.repeat, size["general_validation"], output / "data")
    shrink = overrides(size, general, imdb.resolve(), output)
    walls = {"run": round(launch("run", shrink, output / "run.log"))}
    walls["sweep"] = round(launch("sweep", shrink, output / "sweep.log"))
    result = summary(output, walls)
    if args.size == "cpu":
        result["projection"] = projection(output, args.repeat, size["imdb_validation_fraction"])
    (output / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
