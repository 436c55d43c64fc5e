"""The AWD-LSTM against a Llama of the same size, as language models: held-out perplexity against
training wall time, pre-training on gutenberg then fine-tuning on IMDb, in one run on this machine.

Three arms, each the package's own pipeline (`lm-transfer run`, stages pretrain and lm_finetune)
on one shared tokenizer, the same text and the same number of training tokens:
  llama             recipes/imdb/small.yaml
  awd_lstm          recipes/imdb/awd_lstm.yaml (LM dropouts, drop_mult, carried state, init 0.3, lr 3e-3)
  awd_lstm_before   the same AWD-LSTM trained as the package trained it before: classifier-strength
                    dropouts, independent blocks from a zero state, init 0.1, lr 1e-3
Steps are the recipes' max_steps times --pretrain-fraction / --finetune-fraction (the same fraction
for every arm keeps their token budgets equal). Perplexity is measured on a held-out 0.5 % of the
gutenberg blocks (an evaluation of the 5 validation books takes a minute per point) and on the
recipes' 1 % of the IMDb text. Writes summary.md and curve.png.

  .venv/bin/python benchmarks/awd_lstm_vs_llama.py --out docs/results/awd-lstm-vs-llama
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEFORE = ["pretrain.model.config.output_dropout=0.4", "pretrain.model.config.hidden_dropout=0.3",
          "pretrain.model.config.input_dropout=0.4", "pretrain.model.config.embedding_dropout=0.05",
          "pretrain.model.config.weight_dropout=0.5", "pretrain.model.config.initializer_range=0.1",
          "pretrain.carry_state=false", "pretrain.training.learning_rate=1e-3",
          "lm_finetune.model.config.drop_mult=1.0", "lm_finetune.carry_state=false",
          "lm_finetune.training.learning_rate=1e-3"]
ARMS = {
    "llama": ("recipes/imdb/small.yaml", []),
    "awd_lstm": ("recipes/imdb/awd_lstm.yaml", []),
    "awd_lstm_before": ("recipes/imdb/awd_lstm.yaml", BEFORE),
}
STAGES = ("pretrain", "lm_finetune")


def steps_of(recipe: str, stage: str, fraction: float) -> int:
    return max(1, round(yaml.safe_load((ROOT / recipe).read_text())[stage]["training"]["max_steps"] * fraction))


def launch(recipe: str, overrides: list[str], log: Path) -> None:
    command = [str(ROOT / ".venv/bin/accelerate"), "launch", "--config_file", "recipes/accelerate/single.yaml",
               "--num_cpu_threads_per_process", str(os.cpu_count()), "-m", "pipelines", "run", recipe, *overrides]
    with open(log, "w") as out:
        subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=True)


def run_arm(name: str, args, work: Path) -> dict:
    recipe, extra = ARMS[name]
    overrides = [f"run.output_dir={work / name}", "run.stages=[pretrain,lm_finetune]",
                 f"pretrain.model.tokenizer={work / 'tokenizer' / 'tokenizer'}",
                 "pretrain.data.validation_split=null", "pretrain.data.validation_fraction=0.005", *extra]
    for stage, fraction in (("pretrain", args.pretrain_fraction), ("lm_finetune", args.finetune_fraction)):
        steps = steps_of(recipe, stage, fraction)
        overrides += [f"{stage}.training.max_steps={steps}", f"{stage}.training.eval_strategy=steps",
                      f"{stage}.training.eval_steps={max(1, steps // args.evaluations)}",
                      f'{stage}.training.save_strategy="no"']
    started = time.time()
    launch(recipe, overrides, work / f"{name}.log")
    metrics = {stage: json.loads((work / name / stage / "metrics.json").read_text()) for stage in STAGES}
    return {"wall_seconds": time.time() - started, **metrics}


def _points(curve: list[dict]) -> list[dict]:
    """The curve's evaluations once each (the stage's final evaluation repeats the last one in training)."""
    return list({point["step"]: point for point in curve if point["seconds"] is not None}.values())


def reached(curve: list[dict], target: float) -> float | None:
    """Training seconds at the first evaluation at or below `target` perplexity."""
    return next((point["seconds"] for point in curve if point["perplexity"] <= target), None)


def summary(results: dict, args, command: str) -> str:
    lines = ["# AWD-LSTM vs Llama as language models (2 CPU cores)", "",
             f"`{command}` — {time.strftime('%Y-%m-%d')}, one run, arms one after the other.", "",
             "| arm | parameters | stage | steps | tokens/s | training s | perplexity | curve (s: perplexity) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        for stage in STAGES:
            m = result[stage]
            points = _points(m["eval_curve"])
            curve = ", ".join(f"{p['seconds']:.0f}: {p['perplexity']:.0f}" for p in points)
            lines.append(f"| {name} | {m['parameters'] / 1e6:.1f}M | {stage} | {points[-1]['step']} "
                         f"| {m['train_tokens_per_second']:,.0f} | {points[-1]['seconds']:.0f} | {m['eval_perplexity']:.1f} | {curve} |")
    lines += ["", "Seconds are training time up to each evaluation (evaluations not counted). Pre-training perplexity",
              "is on 0.5 % of the gutenberg blocks held out; fine-tuning perplexity on 1 % of the IMDb text.", ""]
    if "llama" in results:
        for stage in STAGES:
            target = results["llama"][stage]["eval_perplexity"]
            llama_seconds = _points(results["llama"][stage]["eval_curve"])[-1]["seconds"]
            for name in results:
                if name != "llama":
                    at = reached(results[name][stage]["eval_curve"], target)
                    lines.append(f"- {stage}: {name} reached the Llama's final perplexity ({target:.1f}, at "
                                 f"{llama_seconds:.0f} s) " + (f"at {at:.0f} s." if at is not None else "— not within its run."))
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, stage, title in zip(axes, STAGES, ("pre-training on gutenberg", "fine-tuning on IMDb")):
        for name, result in results.items():
            points = [(p["seconds"], p["perplexity"]) for p in _points(result[stage]["eval_curve"])]
            ax.plot(*zip(*points), marker="o", label=name)
        ax.set(title=title, xlabel="training seconds (2 CPU cores)", ylabel="held-out perplexity", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/awd-lstm-vs-llama", help="where summary.md and curve.png go")
    parser.add_argument("--work", default="runs/awd-lstm-vs-llama-work", help="the arms' run folders")
    parser.add_argument("--pretrain-fraction", type=float, default=1 / 3)
    parser.add_argument("--finetune-fraction", type=float, default=1 / 9)
    parser.add_argument("--evaluations", type=int, default=4, help="evaluations per stage")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = parser.parse_args(argv)
    work, out = (ROOT / args.work).resolve(), (ROOT / args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    launch("recipes/imdb/small.yaml", [f"run.output_dir={work / 'tokenizer'}", "run.stages=[tokenizer]"],
           work / "tokenizer.log")
    results = {}
    for name in args.arms:
        print(f"{name}: running ...", flush=True)
        results[name] = run_arm(name, args, work)
        print(f"{name}: {results[name]['wall_seconds']:.0f} s, perplexity "
              f"{results[name]['pretrain']['eval_perplexity']:.1f} -> {results[name]['lm_finetune']['eval_perplexity']:.1f}",
              flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    command = "python benchmarks/awd_lstm_vs_llama.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "summary.md").write_text(summary(results, args, command.strip()))
    plot(results, out / "curve.png")
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
