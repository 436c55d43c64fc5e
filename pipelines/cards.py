"""Model cards: every language-model and classifier stage leaves a README.md in its folder, filled
only from that folder's own outputs (metrics.json, the resolved recipe, config.json) through the
templates in the top-level model_cards/ folder (installed as the package pipelines.model_cards) and
huggingface_hub's ModelCard, so the folder is what goes to the Hub and the model page shows its
evaluation (`model-index`).
"""

from __future__ import annotations

import functools
import json
import os
import re
from importlib import resources
from pathlib import Path

import jinja2
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from . import __version__
from .backbones import PACKAGED_CHECKPOINTS
from .errors import LmTransferError
from .record import read_metrics, read_recipe
from .sentence_encoder import read_defaults

CARD = "README.md"
# A Hub repo id ("imdb", "stanfordnlp/imdb"): only these go into the card's metadata, which the Hub
# links; a local path is named in the text instead.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def format_duration(seconds: float) -> str:
    """'1 h 02 min 03 s', '4 min 05 s' or '12.3 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def hub_id(path: str | None) -> str | None:
    """`path` when it names a Hub repo rather than a local folder (a packaged checkpoint: the repo it
    copies), else None."""
    if path in PACKAGED_CHECKPOINTS:
        return PACKAGED_CHECKPOINTS[path][2]
    if not path or os.path.exists(path) or not _HUB_ID.match(path):
        return None
    return path


def initial_weights(section: dict) -> str | None:
    """Where a stage's weights started: its init_from, or the checkpoint a checkpoint backbone names;
    None when they started random (a model from scratch, or a classifier with random_init)."""
    if section.get("random_init"):
        return None
    model = section.get("model") or {}
    return section.get("init_from") or (model.get("checkpoint") if model.get("backbone") == "checkpoint" else None)


def data_path(data: dict) -> str:
    """How a card names a stage's data: its path, or its files' names when only data.files is given."""
    return data.get("path") or ", ".join(os.path.basename(f) for f in (data.get("files") or {}).values())


def dataset_id(path: str, card_section: dict) -> str | None:
    """The Hub dataset a stage's data is: a Hub id, or a local copy the card section maps to one."""
    return (card_section.get("hub_datasets") or {}).get(path) or hub_id(path)


def earlier_stages(stage: str, resolved: dict) -> list[dict]:
    """The stages this model was built on, oldest first, read from their folders (init_from, then
    that folder's own init_from, ...); a Hub checkpoint at the root is named, not read."""
    chain, base = [], initial_weights(resolved[stage])
    while base and (metrics := read_metrics(base)) is not None and (recipe := read_recipe(base)) is not None:
        name = metrics.get("lm_transfer", {}).get("stage")
        section = recipe.get(name) if name else None
        if section is None:  # a folder from before stages recorded their name
            break
        seconds, training = metrics.get("stage_wall_seconds"), section.get("training", {})
        steps, epochs = training.get("max_steps"), training.get("num_train_epochs")
        chain.append({"stage": name, "folder": base, "data": data_path(section["data"]), "tokens": metrics.get("train_tokens"),
                      "schedule": f"{steps} steps" if steps and steps > 0 else f"{epochs} epoch{'s' * (epochs != 1)}" if epochs else None,
                      "perplexity": metrics.get("eval_perplexity"), "hardware": metrics.get("hardware"),
                      "wall_time": format_duration(seconds) if seconds else None})
        base = initial_weights(section)
    if base:  # a Hub id, a packaged checkpoint, or a folder lm-transfer did not write
        chain.append({"stage": "initial weights", "folder": base})
    return chain[::-1]


def refresh_card(folder: Path, card_section: dict) -> bool:
    """Re-render the card of a folder that is current for a recipe (so the stage is skipped) from
    the folder's own outputs and the recipe's card section as it is now: a license or tags added
    after training reach the card without retraining. The sweep tables a sweep put on the card
    stay. True when the card changed."""
    path = folder / CARD
    before = path.read_text() if path.exists() else ""
    kept = _SWEEP_TABLES.search(before) if (folder / "curve.png").exists() else None
    metrics = read_metrics(folder)
    built_by = metrics["lm_transfer"]  # (a sweep arm may share the folder: the recipe that built it)
    resolved = {**read_recipe(folder), "card": card_section}
    after = render_card(folder, built_by["stage"], built_by["recipe"], resolved, metrics,
                        kept.group(1) if kept else None)
    if str(after) == before:
        return False
    after.save(path)
    return True


_SWEEP_TABLES = re.compile(r"<!-- lm-transfer:sweep-tables[^>]*-->\n(.*?)\n<!-- /lm-transfer:sweep-tables -->", re.S)


def write_card(folder: Path, stage: str, recipe_path: str, resolved: dict, metrics: dict,
               label_efficiency: str | None = None) -> ModelCard:
    """Render and save the card of a finished stage's folder (see render_card)."""
    rendered = render_card(folder, stage, recipe_path, resolved, metrics, label_efficiency)
    rendered.save(folder / CARD)
    return rendered


def render_card(folder: Path, stage: str, recipe_path: str, resolved: dict, metrics: dict,
                label_efficiency: str | None = None) -> ModelCard:
    """The card of a finished stage's folder. `resolved` is the resolved recipe (its card section
    gives what no output can tell), `metrics` what the stage wrote to metrics.json,
    `label_efficiency` the recipe's sweep tables (Markdown) when the sweep ran, with curve.png in
    the folder."""
    section, card_section = resolved[stage], resolved.get("card") or {}
    config = json.loads((folder / "config.json").read_text())
    classifier = stage == "classify"
    body = config.get("backbone") or config  # a transformer classifier nests its body's config
    backbone = body["model_type"]
    data = {**section["data"], "path": data_path(section["data"])}
    dataset = dataset_id(data["path"], card_section)
    base = initial_weights(section)
    masked = metrics.get("objective") == "masked"
    if classifier:
        pipeline_tag, task = "text-classification", "text-classification"
        results = [("accuracy", "Accuracy", metrics["test_accuracy"], None),
                   ("f1", "Macro-F1", metrics["test_f1_macro"], {"average": "macro"})] if "test_accuracy" in metrics else []
        split = data["test_split"]
        if data.get("max_test_examples"):
            split += f" (stratified subset of {metrics['test_examples']:,})"
    else:
        pipeline_tag = task = "fill-mask" if masked else "text-generation"
        results = [("perplexity", "Perplexity", metrics["eval_perplexity"], None)]
        split = data.get("validation_split") or (f"{' + '.join([data['train_split'], *data['unlabeled_splits']])} "
                                                 f"(held-out {100 * data['validation_fraction']:g} %)")
    eval_results = [
        # (the Hub wants a dataset id as type; a local dataset without one gets its folder's name)
        EvalResult(task_type=task, dataset_type=dataset or re.split(r"[/:]", os.path.normpath(data["path"]))[-1],
                   dataset_name=dataset or data["path"], dataset_config=data.get("name"), dataset_split=split,
                   metric_type=metric, metric_name=name, metric_value=value, metric_args=args)
        for metric, name, value, args in results
    ]
    tags = list(dict.fromkeys(["ulmfit", "lm-transfer", *([pipeline_tag] if classifier else []), backbone,
                               *card_section.get("tags", []),
                               *(card_section.get("classifier_tags", []) if classifier else [])]))
    model_name = f"{resolved['run']['name']}-{stage.replace('_', '-')}"
    earlier = earlier_stages(stage, resolved)
    # The Hub's `datasets`: everything the weights were trained on, through the earlier stages too.
    trained_on = [*(dataset_id(s.get("data"), card_section) for s in earlier), dataset]
    datasets = list(dict.fromkeys(filter(None, trained_on)))
    card_data = ModelCardData(
        model_name=model_name,
        license=card_section.get("license"), language=card_section.get("language") or None,
        library_name="transformers",
        pipeline_tag=pipeline_tag, tags=tags, datasets=datasets or None,
        base_model=hub_id(base), eval_results=eval_results or None)
    training = section.get("training", {})
    values = dict(
        model_name=model_name, stage=stage, recipe_path=recipe_path,
        backbone=backbone, config=config, metrics=metrics, direction=config.get("direction", "forward"),
        parameters=metrics["parameters"], vocab_size=body.get("vocab_size"), data=data, base_model=base,
        sequence_length=section.get("max_length") if classifier else section.get("block_size"),
        masked=masked, training=training, stage_yaml=yaml.safe_dump({stage: _used(section)}, sort_keys=False).rstrip(),
        wall_time=format_duration(wall) if (wall := metrics.get("stage_wall_seconds")) else None,
        hardware=metrics.get("hardware"),
        label_efficiency=label_efficiency, earlier_stages=earlier, dataset_link=dataset,
        frameworks=metrics.get("lm_transfer", {}).get("frameworks"),
        citations=[entry.strip() for entry in card_section.get("citations", [])])
    # What ModelCard.from_template does, through an environment that lets the templates include
    # their shared parts (model_cards/_*.md).
    template = _templates().get_template("classifier.md" if classifier else "language_model.md")
    loading = _loading(config, stage, metrics, card_section, section["output_dir"], Path(folder))
    return ModelCard(template.render(card_data=card_data.to_yaml(), **{**card_data.to_dict(), **values, **loading}))


def write_ensemble_card(folder: Path, recipe_path: str, resolved: dict, metrics: dict) -> ModelCard:
    """The card of a sweep's kept ensemble (pipelines/ensemble.py): which members it averages, which
    direction each reads, their accuracies and the ensemble's."""
    card_section, data = resolved.get("card") or {}, resolved["classify"]["data"]
    members = []
    for member in metrics["members"]:
        path = folder.parent / member["folder"]
        config = json.loads((path / "config.json").read_text())
        body = config.get("backbone") or config
        members.append({**member, "path": str(path), "direction": config.get("direction", "forward"),
                        "backbone": body["model_type"]})
    dataset = dataset_id(data_path(data), card_section)
    split = data["test_split"] + (f" (stratified subset of {metrics['test_examples']:,})"
                                  if data.get("max_test_examples") else "")
    eval_results = [EvalResult(task_type="text-classification", dataset_type=dataset or os.path.basename(data_path(data)),
                               dataset_name=dataset or data_path(data), dataset_split=split, metric_type=metric,
                               metric_name=name, metric_value=metrics[key], metric_args=args)
                    for metric, name, key, args in (("accuracy", "Accuracy", "test_accuracy", None),
                                                    ("f1", "Macro-F1", "test_f1_macro", {"average": "macro"}))]
    model_name = resolved["run"]["name"]
    card_data = ModelCardData(model_name=model_name, license=card_section.get("license"),
                              language=card_section.get("language") or None, pipeline_tag="text-classification",
                              tags=list(dict.fromkeys(["ulmfit", "lm-transfer", "ensemble", *card_section.get("tags", [])])),
                              datasets=[dataset] if dataset else None, eval_results=eval_results)
    text = _templates().get_template("ensemble.md").render(
        card_data=card_data.to_yaml(), model_name=model_name, members=members, metrics=metrics, data=data,
        arm=metrics["lm_transfer"]["sweep_cell"]["arm"], recipe_path=recipe_path, folder=str(folder),
        bidirectional={m["direction"] for m in members} == {"forward", "backward"},
        backbone=members[0]["backbone"], citations=[entry.strip() for entry in card_section.get("citations", [])])
    card = ModelCard(text)
    card.save(folder / CARD)
    return card


def _loading(config: dict, stage: str, metrics: dict, card_section: dict, output_dir: str, folder: Path) -> dict:
    """What a card's code notice and How to load say (_code_notice.md, _how_to_load.md), for
    loading with lm-transfer installed."""
    classifier, masked = stage == "classify", metrics.get("objective") == "masked"
    return dict(
        # (a folder with sentence-transformers files: how to load it there, with the pooling they give)
        sentence_pooling=read_defaults(folder).get("pooling") if (folder / "modules.json").is_file() else None,
        classifier=classifier, model_type=config["model_type"], output_dir=output_dir,
        # lm-transfer's own classes, which transformers lacks: the classifier (any body) and the AWD-LSTM
        needs_package=classifier or config["model_type"] == "awd_lstm",
        auto_class=("AutoModelForSequenceClassification" if classifier else
                    "AutoModelForMaskedLM" if masked else "AutoModelForCausalLM"),
        version=metrics.get("lm_transfer", {}).get("version"), install=card_section.get("install"),
        remote_code=False)


_LOADING_BLOCKS = ("code-notice", "how-to-load")


def with_modeling_code(text: str, folder: Path) -> str:
    """A card's text for a repo that also carries the model's code (remote_code.MODELING_FILE, from
    publish --with-code): its code notice and How to load re-rendered to load the model with
    trust_remote_code=True and without lm-transfer installed."""
    config = json.loads((folder / "config.json").read_text())
    metrics = read_metrics(folder)
    values = {**_loading(config, metrics["lm_transfer"]["stage"], metrics, {}, str(folder), folder),
              "remote_code": True, "code_version": __version__}
    for name in _LOADING_BLOCKS:
        block = re.compile(rf"<!-- lm-transfer:{name} -->\n.*?<!-- /lm-transfer:{name} -->", re.S)
        if not block.search(text):
            raise LmTransferError(f"{folder / CARD}: no <!-- lm-transfer:{name} --> block (a card written by an "
                                  "older lm-transfer): `lm-transfer run RECIPE` finds the stage current and "
                                  "re-renders its card")
        rendered = _templates().get_template(f"_{name.replace('-', '_')}.md").render(**values).strip()
        text = block.sub(lambda _: rendered, text, count=1)
    return text


def _used(section: dict) -> dict:
    """A stage's resolved config as the card shows it: a stage that starts from init_from takes its
    architecture from there, so its (defaulted) model section would only mislead."""
    if section.get("init_from") and not (section.get("model") or {}).get("tokenizer"):
        return {key: value for key, value in section.items() if key != "model"}
    return section


@functools.cache
def _templates() -> jinja2.Environment:
    # The templates are the package pipelines.model_cards, which pyproject.toml maps to the top-level
    # model_cards/ folder: found as a package, not as pipelines/'s subfolder (which an editable install lacks).
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(resources.files("pipelines.model_cards"))))

