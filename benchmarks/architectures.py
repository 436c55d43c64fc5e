"""RNN vs Transformer with lm-transfer's own models: recipes/imdb/awd_lstm.yaml's AWD-LSTM and
recipes/imdb/small.yaml's Llama (7.5M parameters each; the same tokenizer, text, token budget and
schedule), trained through the pipeline, then measured against context length on this machine (and
each again trained on ~1,000-token blocks, for what depends on how far back training reached:
perplexity and the influence of far tokens):

- bytes carried to predict the next word (LSTM hidden + cell states vs the KV cache), 128 -> 8,192 tokens
- generate() seconds per new token after a prompt of that length
- training tokens/s and peak memory (RSS, a fresh process per point) at that block size
- perplexity on ../shared/data/wikitext103 validation with that much context (the second half of each
  window scored, so every scored token has at least half the window before it)
- IMDb test accuracy of each model's classifier by review length
- how much the next-word distribution moves (KL) when the token d positions back is replaced

    make compare-architectures              # trains what is not built yet (35-70 min a model here)
    python benchmarks/architectures.py --skip-training --contexts 128 512 2048

Writes docs/results/architectures/results.json, results.md (the tables) and architectures.png
(docs/results/architectures.md is written from them). A benchmark, not a test: run nothing else meanwhile."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "results" / "architectures"


@dataclass(frozen=True)
class Model:
    recipe: str
    overrides: tuple[str, ...] = ()
    # A variant of an architecture measured above shares its costs (state, time per token, training
    # speed): only what training changed is measured again (perplexity, influence of far tokens).
    quality_only: bool = False


def trained_on_long_blocks(name: str, base_run: str, block_size: int, batch_size: int, *more: str) -> tuple[str, ...]:
    """Overrides that train a recipe's LM stages again on `block_size`-token blocks, with the same tokens
    per step (batch_size x block_size), steps, text and tokenizer (the recipe's run's)."""
    return (f"run.name={name}", f"run.output_dir=runs/{name}", "run.stages=[pretrain,lm_finetune]",
            f"tokenizer.output_dir=runs/{base_run}/tokenizer", *more,
            *(f"{stage}.{key}" for stage in ("pretrain", "lm_finetune")
              for key in (f"block_size={block_size}", f"training.per_device_train_batch_size={batch_size}",
                          "training.per_device_eval_batch_size=8")))


# The recipes train the Llama on 128-token blocks, so it has never seen a position past 128, and the
# AWD-LSTM on 70-token bptt windows (its state runs on from batch to batch, its gradient reaches 70
# tokens back). Each is trained again on ~1,000-token blocks (4 x 1,024 = 32 x 128; 4 x 1,120 = 64 x 70).
MODELS = {"AWD-LSTM": Model("recipes/imdb/awd_lstm.yaml"),
          "AWD-LSTM-1120": Model("recipes/imdb/awd_lstm.yaml", trained_on_long_blocks(
              "imdb-awd-lstm-1120", "imdb-awd-lstm", 1120, 4), quality_only=True),
          "Llama": Model("recipes/imdb/small.yaml"),
          "Llama-1024": Model("recipes/imdb/small.yaml", trained_on_long_blocks(
              "imdb-small-1024", "imdb-small", 1024, 4, "pretrain.model.config.max_position_embeddings=1024"),
              quality_only=True)}
CONTEXTS = [128, 256, 512, 1024, 2048, 4096, 8192]
PERPLEXITY_CONTEXTS = [32, 64, 128, 256, 512, 1024]
DISTANCES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
LENGTH_BUCKETS = [(0, 128), (128, 256), (256, 384), (384, 10**9)]


def stage_folders(model: Model) -> dict[str, str]:
    from pipelines.config import load_recipe

    loaded = load_recipe(ROOT / model.recipe, model.overrides)
    return {name: str(ROOT / loaded.stage(name).output_dir) for name in loaded.config.run.stages}


def train(model: Model) -> None:
    """`make run` (the runner skips stages already built from the same config)."""
    subprocess.run(["make", "run", f"RECIPE={model.recipe}", f"ARGS={' '.join(model.overrides)}"], cwd=ROOT, check=True)


def wikitext_ids(tokenizer, tokens: int) -> torch.Tensor:
    """The first `tokens` tokens of wikitext-103's validation articles as one stream."""
    from datasets import load_dataset

    text = "".join(load_dataset(str(SHARED / "wikitext103"), split="validation")["text"])
    return torch.tensor(tokenizer(text[: tokens * 8])["input_ids"][:tokens])


@torch.no_grad()
def windowed_perplexity(lm, stream: torch.Tensor, context: int, max_windows: int = 64) -> float:
    """exp(mean loss) of the second half of non-overlapping windows of `context` tokens."""
    windows = stream[: len(stream) // context * context].view(-1, context)[:max_windows]
    losses = []
    for batch in windows.split(8):
        logits = lm(input_ids=batch).logits.float()
        half = context // 2
        losses.append(torch.nn.functional.cross_entropy(
            logits[:, half - 1:-1].flatten(0, 1), batch[:, half:].flatten(), reduction="none"))
    return float(torch.cat(losses).mean().exp())


def train_probe(folder: str, context: int, tokens: int, steps: int) -> dict:
    """Forward + backward at block size `context` (batch = tokens // context), in this process:
    tokens/s over `steps` after a warm-up step, and the process's peak RSS."""
    from pipelines.backbones import load_language_model

    torch.set_flush_denormal(True)
    lm = load_language_model(folder)
    lm.config.max_position_embeddings = max(context, getattr(lm.config, "max_position_embeddings", 0) or 0)
    lm.train()
    optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-4)
    batch = torch.randint(5, lm.config.vocab_size, (max(1, tokens // context), context))
    seconds = 0.0
    for step in range(steps + 1):
        started = time.perf_counter()
        lm(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds += (time.perf_counter() - started) if step else 0.0
    return {"tokens_per_second": batch.numel() * steps / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def accuracy_by_length(classifier: str) -> list[dict]:
    """IMDb test accuracy per review length (tokens), on the recipe's 2,000 stratified test reviews."""
    from pipelines.config import DataConfig
    from pipelines.data import classification_splits
    from pipelines.predict import load_classifier

    _, test, names = classification_splits(DataConfig(path=str(SHARED / "imdb"), max_test_examples=2000), None, 42)
    classify = load_classifier(classifier)
    lengths = [len(ids) for ids in classify.tokenizer(list(test["text"]))["input_ids"]]
    predicted = [max(scores, key=lambda s: s["score"])["label"]
                 for scores in classify(list(test["text"]), batch_size=32, truncation=True)]
    right = np.array([p == names[t] for p, t in zip(predicted, test["label"])])
    lengths = np.array(lengths)
    out = []
    for low, high in LENGTH_BUCKETS:
        chosen = (lengths >= low) & (lengths < high)
        out.append({"tokens": f"{low}-{high if high < 10**9 else ''}", "reviews": int(chosen.sum()),
                    "accuracy": float(right[chosen].mean()) if chosen.any() else None})
    return out


def measure(name: str, model: Model, args) -> dict:
    from pipelines.architectures import distance_influence, next_word_state_bytes, seconds_per_new_token
    from pipelines.backbones import load_language_model, load_tokenizer

    folders = stage_folders(model)
    lm = load_language_model(folders["lm_finetune"]).eval()
    tokenizer = load_tokenizer(folders["lm_finetune"])
    stream = wikitext_ids(tokenizer, max(max(args.contexts), 64 * max(PERPLEXITY_CONTEXTS), 16 * 1024) + 1)
    result = {"parameters": sum(p.numel() for p in lm.parameters()), "by_context": {}}
    for context in [] if model.quality_only else args.contexts:
        prompt = stream[:context].unsqueeze(0)
        row = {"state_bytes": next_word_state_bytes(lm, prompt),
               "seconds_per_token": seconds_per_new_token(lm, prompt, new_tokens=32)}
        probe = subprocess.run([sys.executable, __file__, "--train-probe", folders["lm_finetune"], str(context)],
                               capture_output=True, text=True, check=True)
        row.update(json.loads(probe.stdout.strip().splitlines()[-1]))
        result["by_context"][context] = row
        print(name, context, row, file=sys.stderr, flush=True)
    result["perplexity"] = {c: windowed_perplexity(lm, stream, c) for c in PERPLEXITY_CONTEXTS}
    windows = stream[: 16 * 1024].view(16, 1024)
    result["influence"] = distance_influence(lm, windows, [d for d in DISTANCES if d <= 1024])
    if "classify" in folders:
        result["accuracy_by_length"] = accuracy_by_length(folders["classify"])
    return result


def plots(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("state_bytes", "bytes carried to predict the next word", True),
              ("seconds_per_token", "generate(): seconds per new token", True),
              ("tokens_per_second", "training tokens/s", False), ("peak_rss_mb", "training peak RSS (MiB)", True)]
    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (key, title, log) in zip(axes.flat, panels):
        for name, result in results.items():
            if not result["by_context"]:
                continue
            contexts = sorted(result["by_context"], key=int)
            ax.plot([int(c) for c in contexts], [result["by_context"][c][key] for c in contexts], marker="o", label=name)
        ax.set(xscale="log", yscale="log" if log else "linear", xlabel="context (tokens)", title=title)
        ax.legend()
    ax = axes.flat[4]
    for name, result in results.items():
        ax.plot([int(c) for c in result["perplexity"]], list(result["perplexity"].values()), marker="o", label=name)
    ax.set(xscale="log", xlabel="context (tokens)", title="wikitext-103 validation perplexity")
    ax.legend()
    ax = axes.flat[5]
    for name, result in results.items():
        ax.plot([int(d) for d in result["influence"]], list(result["influence"].values()), marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="distance of the replaced token", title="KL of the next-word distribution")
    ax.legend()
    figure.tight_layout()
    figure.savefig(out / "architectures.png", dpi=100)
    plt.close(figure)


def tables(results: dict) -> str:
    """The measurements, as results.json holds them (string keys), as markdown tables (results.md), for
    docs/results/architectures.md."""
    names = list(results)
    timed = [n for n in names if results[n]["by_context"]]
    contexts = sorted({int(c) for n in timed for c in results[n]["by_context"]})
    lines = ["| context | " + " | ".join(f"{n}: state KiB | {n}: ms/new token | {n}: train tok/s | {n}: peak MiB"
                                           for n in timed) + " |", "|---" * (1 + 4 * len(timed)) + "|"]
    for c in contexts:
        cells = []
        for n in timed:
            row = results[n]["by_context"].get(str(c))
            cells += ["-"] * 4 if row is None else [f"{row['state_bytes'] / 1024:,.0f}", f"{1000 * row['seconds_per_token']:.2f}",
                                                    f"{row['tokens_per_second']:,.0f}", f"{row['peak_rss_mb']:,.0f}"]
        lines.append(f"| {c:,} | " + " | ".join(cells) + " |")
    lines += ["", "| wikitext-103 context | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
    for c in PERPLEXITY_CONTEXTS:
        lines.append(f"| {c} | " + " | ".join(f"{results[n]['perplexity'][str(c)]:.1f}" for n in names) + " |")
    lines += ["", "| replaced token's distance | " + " | ".join(f"{n}: KL" for n in names) + " |", "|---" * (1 + len(names)) + "|"]
    for d in DISTANCES:
        values = [results[n]["influence"].get(str(d)) for n in names]
        lines.append(f"| {d} | " + " | ".join("-" if v is None else f"{v:.2g}" for v in values) + " |")
    classified = [n for n in names if "accuracy_by_length" in results[n]]
    lines += ["", "| review length (tokens) | " + " | ".join(f"{n}: reviews, accuracy" for n in classified) + " |",
              "|---" * (1 + len(classified)) + "|"]
    for i, (low, high) in enumerate(LENGTH_BUCKETS):
        cells = [results[n]["accuracy_by_length"][i] for n in classified]
        lines.append(f"| {low}-{high if high < 10**9 else ''} | "
                     + " | ".join(f"{c['reviews']}, {100 * c['accuracy']:.1f} %" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-training", action="store_true", help="use the models already built")
    parser.add_argument("--contexts", type=int, nargs="*", default=CONTEXTS)
    parser.add_argument("--models", nargs="*", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--train-probe", nargs=2, metavar=("FOLDER", "CONTEXT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_probe:  # (a child process: its peak RSS is this one point's)
        print(json.dumps(train_probe(args.train_probe[0], int(args.train_probe[1]), tokens=8192, steps=2)))
        return
    torch.set_flush_denormal(True)
    started = time.time()
    results = {}
    for name, model in MODELS.items():
        if name not in args.models:
            continue
        if not args.skip_training:
            train(model)
        results[name] = measure(name, model, args)
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/architectures.py", *sys.argv[1:]])
    (args.out / "results.json").write_text(json.dumps({"command": command, "seconds": round(time.time() - started),
                                                  "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                                                  "results": results}, indent=2) + "\n")
    plots(results, args.out)
    (args.out / "results.md").write_text(f"`{command}`\n\n" + tables(json.loads(json.dumps(results))))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
