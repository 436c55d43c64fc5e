"""`make bench`: what the package's training path costs on this machine, written to docs/results/bench.md.

1. Trainer against a minimal hand-written loop, both backbones (benchmarks/trainer_vs_loop.py).
2. Training tokens/s of every stage, and one process against two, for recipes/imdb/awd_lstm.yaml and
   small.yaml with every stage shrunk to a few steps (`make run` with ACCELERATE_CONFIG single.yaml,
   then cpu_2proc.yaml: two processes of one thread each on the same cores).
3. Tokenize + block gutenberg 1x, 4x, 8x (benchmarks/corpus_scale.py).
A benchmark, never a test: about 25 minutes on 2 CPU cores. Run nothing else meanwhile.

  make bench      (or: .venv/bin/python benchmarks/bench.py [--out docs/results/bench.md] [--skip scale])
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "bench"
SHRUNK = ["pretrain.training.max_steps=40", "lm_finetune.training.max_steps=40", "classify.training.num_train_epochs=1",
          "classify.compare_scratch=false", 'pretrain.training.save_strategy="no"', 'lm_finetune.training.save_strategy="no"',
          "pretrain.data.validation_split=null", "pretrain.data.validation_fraction=0.002",
          "lm_finetune.data.validation_fraction=0.002", "classify.data.max_test_examples=200"]
STAGES = ("pretrain", "lm_finetune", "classify")
MARK = "<!-- make bench -->"
HEADER = """# Benchmarks

What the package's training and data paths cost on a given machine. Everything below the marker is
rewritten by `make bench`; the sections above it are written by hand from longer runs.

"""


def _run(command: list[str], log: Path, env: dict | None = None) -> float:
    started = time.time()
    with open(log, "w") as out:
        subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=True, env=env)
    return time.time() - started


def launch(recipe: str, accelerate_config: str, output: Path, log: Path) -> float:
    processes = 2 if "2proc" in accelerate_config else 1
    threads = max(1, (os.cpu_count() or 1) // processes)
    return _run([str(ROOT / ".venv/bin/accelerate"), "launch", "--config_file", accelerate_config,
                 "--num_cpu_threads_per_process", str(threads), "-m", "pipelines", "run", recipe,
                 f"run.output_dir={output}", f"tokenizer.output_dir={WORK / 'tokenizer' / 'tokenizer'}",
                 "run.stages=[pretrain,lm_finetune,classify]", *SHRUNK], log)


def stage_rows() -> list[dict]:
    rows = []
    for recipe in ("recipes/imdb/awd_lstm.yaml", "recipes/imdb/small.yaml"):
        for config in ("recipes/accelerate/single.yaml", "recipes/accelerate/cpu_2proc.yaml"):
            name = f"{Path(recipe).stem}-{Path(config).stem}"
            wall = launch(recipe, config, WORK / name, WORK / f"{name}.log")
            for stage in STAGES:
                folder = WORK / name / ("classifier" if stage == "classify" else stage)
                m = json.loads((folder / "metrics.json").read_text())
                rows.append({"recipe": recipe, "processes": 2 if "2proc" in config else 1, "stage": stage,
                             "tokens_per_second": round(m["train_tokens_per_second"]),
                             "train_seconds": round(m["train_runtime"], 1), "run_wall_seconds": round(wall)})
            print(rows[-3:], flush=True)
    return rows


def _section(title: str, intro: list[str], columns: list[str]) -> list[str]:
    """A measured table's heading, how it was measured and its header row."""
    return ["", f"### {title}", "", *intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def write_markdown(path: Path, loop: list[dict], stages: list[dict], scale: list[dict], hardware: str) -> None:
    lines = [MARK, f"## make bench — {time.strftime('%Y-%m-%d')}, {hardware}"]
    if loop:
        lines += _section("Trainer against a hand-written loop", [
            "`python benchmarks/trainer_vs_loop.py --tokenizer runs/bench/tokenizer/tokenizer` (same model, batches,",
            "data, threads, bf16 autocast, AdamW, STLR, clipping; 60 steps, best of 2, alternating):"],
            ["model", "Trainer tokens/s", "loop tokens/s", "ratio (target ≥ 0.95)"])
        lines += [f"| {r['model']} | {r['trainer_tokens_per_second']:,} | {r['loop_tokens_per_second']:,} | {r['ratio']:.3f} |"
                  for r in loop]
    if stages:
        lines += _section("Training tokens/s of every stage, one process against two", [
            "`make run RECIPE=... ARGS=\"<a few steps per stage>\"` with `ACCELERATE_CONFIG=recipes/accelerate/single.yaml`",
            "(1 process, 2 threads) and `cpu_2proc.yaml` (2 processes of 1 thread, gloo DDP):"],
            ["recipe", "stage", "1 process", "2 processes", "2 / 1"])
        for recipe in dict.fromkeys(r["recipe"] for r in stages):
            for stage in STAGES:
                one, two = (next(r["tokens_per_second"] for r in stages
                                 if r["recipe"] == recipe and r["stage"] == stage and r["processes"] == p) for p in (1, 2))
                lines.append(f"| {recipe} | {stage} | {one:,} | {two:,} | {two / one:.2f} |")
    if scale:
        scales = ", ".join(f"{n}x" for n in dict.fromkeys(r["scale"] for r in scale))
        lines += _section(f"Tokenize + block gutenberg {scales}", [
            "`python benchmarks/corpus_scale.py --tokenizer runs/bench/tokenizer/tokenizer` (each in a fresh process",
            "and an empty cache; peak RSS of the process or its largest tokenizing child, which counts the",
            "memory-mapped files' resident pages; peak anonymous memory (Pss_Anon) of the process and its",
            "children together):"],
            ["mode", "corpus", "tokens", "seconds", "s per 10M tokens", "peak RSS (MiB)", "peak anonymous (MiB)"])
        lines += [f"| {r['mode']} | gutenberg x{r['scale']} | {r['tokens'] / 1e6:.1f}M | {r['total_seconds']:.0f} | "
                  f"{10e6 * r['total_seconds'] / r['tokens']:.1f} | {r['peak_rss_mib']:,} | "
                  f"{format(r['peak_anonymous_mib'], ',') if 'peak_anonymous_mib' in r else 'not measured'} |" for r in scale]
    text = path.read_text() if path.exists() else HEADER
    above, _, below = text.partition(MARK)
    # A part skipped this time keeps its table from the last run that measured it (its own date line).
    def part(heading: str) -> str:  # "### Tokenize + block gutenberg 1x, 8x" -> "### Tokenize + block"
        return " ".join(heading.split()[:4])

    measured = {part(line) for line in lines if line.startswith("### ")}
    kept = [section for section in re.split(r"\n(?=### )", below) if section.startswith("### ")
            and part(section.splitlines()[0]) not in measured]
    if kept:
        note = "(kept from an earlier `make bench`: not measured this time)"
        lines += ["", "\n\n".join(section.rstrip() if note in section else f"{section.rstrip()}\n\n{note}"
                                  for section in kept)]
    path.write_text(above.rstrip() + "\n\n" + "\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results/bench.md")
    parser.add_argument("--skip", nargs="*", default=[], choices=["loop", "stages", "scale"])
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    python = str(ROOT / ".venv/bin/python")
    _run([str(ROOT / ".venv/bin/lm-transfer"), "run", "recipes/imdb/small.yaml", "run.stages=[tokenizer]",
          f"run.output_dir={WORK / 'tokenizer'}"], WORK / "tokenizer.log")
    tokenizer = str(WORK / "tokenizer" / "tokenizer")
    loop = stages = scale = []
    if "loop" not in args.skip:
        _run([python, "benchmarks/trainer_vs_loop.py", "--tokenizer", tokenizer, "--out", str(WORK / "loop.json")],
             WORK / "loop.log")
        loop = json.loads((WORK / "loop.json").read_text())
    if "stages" not in args.skip:
        stages = stage_rows()
    if "scale" not in args.skip:
        _run([python, "benchmarks/corpus_scale.py", "--tokenizer", tokenizer, "--out", str(WORK / "scale.json")],
             WORK / "scale.log")
        scale = json.loads((WORK / "scale.json").read_text())
    import platform

    hardware = f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
    write_markdown(ROOT / args.out, loop, stages, scale, hardware)
    print((ROOT / args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
