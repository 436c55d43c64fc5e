"""The label-efficiency sweep: arms derived from the recipe, paired and nested cells, resume, the
report, and every bad-input error raised before any training."""

import json
from pathlib import Path

import pytest
from conftest import tiny_recipe, write_recipe

from pipelines.config import load_recipe
from pipelines.errors import DataError, RecipeError
from pipelines.sweep import append_result, build_arm, plan_sweep, read_results, run_sweep, write_sweep_report

ARMS = ["scratch", "pretrained", "tfidf_lr", "frozen_probe"]


def sweep_recipe(data: Path, out: Path, **sweep) -> dict:
    recipe = tiny_recipe(data, out, backbone="llama")
    recipe["run"]["stages"] = ["tokenizer", "pretrain", "lm_finetune"]
    recipe["sweep"] = {"output_dir": "${run.output_dir}/sweep", "arms": ARMS, "examples_per_class": [1, 4],
                       "seeds": [0, 1], "test_examples": 30, **sweep}
    return recipe


def load(tmp_path, recipe: dict, overrides=()):
    return load_recipe(write_recipe(tmp_path / "sweep.yaml", recipe), list(overrides))


@pytest.fixture(scope="module")
def swept(tmp_path_factory, topic_data):
    """A finished tiny sweep: 4 arms x 2 budgets x 2 seeds."""
    root = tmp_path_factory.mktemp("sweep")
    recipe = load(root, sweep_recipe(topic_data, root / "run"))
    efficiency = run_sweep(recipe, command="lm-transfer sweep sweep.yaml")
    return {"root": root, "recipe": recipe, "efficiency": efficiency, "out": Path(recipe.config.sweep.output_dir)}


def test_every_cell_is_written_once_with_its_scores(swept):
    rows = read_results(swept["out"] / "results.jsonl")
    assert len(rows) == len(ARMS) * 2 * 2
    assert {(r["arm"], r["examples_per_class"], r["seed"]) for r in rows} == {
        (a, b, s) for a in ARMS for b in (1, 4) for s in (0, 1)}
    assert all(0 <= r["accuracy"] <= 1 and r["test_examples"] == 30 and r["train_examples"] == 3 * r["examples_per_class"]
               for r in rows)
    # The topics are easy: with 4 labels per class the word-count baseline is far above chance (1/3).
    assert min(r["accuracy"] for r in rows if r["arm"] == "tfidf_lr" and r["examples_per_class"] == 4) > 0.6


def test_arms_see_the_same_labeled_examples_per_budget_and_seed(swept):
    rows = read_results(swept["out"] / "results.jsonl")
    subsets = {}
    for r in rows:
        subsets.setdefault((r["examples_per_class"], r["seed"]), set()).add(r["labeled_subset"])
    assert len(subsets) == 4 and all(len(s) == 1 for s in subsets.values())
    assert len({next(iter(s)) for s in subsets.values()}) == 4  # and differ between seeds and budgets


def test_report_files_and_label_efficiency(swept):
    out, efficiency = swept["out"], swept["efficiency"]
    summary = (out / "summary.md").read_text()
    assert "lm-transfer sweep sweep.yaml" in summary and "## Test accuracy" in summary
    for arm in ARMS:
        assert f"| {arm} |" in summary
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert efficiency["reference"] == "scratch" and set(efficiency["arms"]) == set(ARMS)
    assert json.loads((out / "label_efficiency.json").read_text()) == efficiency
    assert efficiency["arms"]["scratch"]["budgets"] == [3, 12]


def test_rerun_skips_finished_cells_and_redoes_a_lost_one(swept, capsys):
    results = swept["out"] / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    # Lose the last cell and leave half a line behind, as a crash mid-write would.
    results.write_text("".join(lines[:-1]) + lines[-1][:20])
    run_sweep(swept["recipe"])
    assert "15 already in" in capsys.readouterr().out
    rows = read_results(results)
    assert len(rows) == 16 and results.read_text().endswith("\n")
    run_sweep(swept["recipe"])
    assert "16 already in" in capsys.readouterr().out and len(read_results(results)) == 16


def test_a_changed_arm_reruns_only_its_cells(swept, capsys):
    recipe = load(swept["root"], sweep_recipe(swept["recipe"].config.data.path, swept["root"] / "run",
                                              arm_definitions={"frozen_probe": {"recipe": {"classify": {"pooling": "mean"}}}}))
    efficiency = run_sweep(recipe)
    assert "12 already in" in capsys.readouterr().out
    rows = read_results(swept["out"] / "results.jsonl")
    assert len(rows) == 20 and {r["method"] for r in rows if r["arm"] == "frozen_probe"} == {"probe"}
    # The old frozen_probe rows stay in the file but are not reported: two seeds per budget, not four.
    assert efficiency["arms"]["frozen_probe"]["seeds"] == [2, 2]


def test_arms_share_identical_lm_stages_and_move_changed_ones(tmp_path, topic_data):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", arms=["scratch", "ulmfit", "lm_full", "clf_full"]))
    arms = {name: build_arm(recipe, name) for name in ["scratch", "pretrained", "ulmfit", "lm_full", "clf_full"]}
    base = recipe.config
    assert arms["scratch"].recipe.config.run.stages == ["tokenizer", "pretrain"]
    assert arms["scratch"].classify.init_from == base.pretrain.output_dir and arms["scratch"].classify.random_init
    assert arms["pretrained"].classify.init_from == base.pretrain.output_dir
    # ulmfit is the recipe's own LM fine-tuning (no unlabeled splits here): the same folder.
    assert arms["ulmfit"].classify.init_from == base.lm_finetune.output_dir
    assert arms["clf_full"].classify.init_from == base.lm_finetune.output_dir
    # lm_full fine-tunes differently: its own folder under the sweep, named by content.
    moved = arms["lm_full"].classify.init_from
    assert moved.startswith(f"{base.sweep.output_dir}/stages/lm_finetune-")
    assert arms["lm_full"].recipe.config.lm_finetune.training["slanted_triangular_lr"] is False
    assert build_arm(recipe, "lm_full").classify.init_from == moved
    assert len({a.fingerprint for a in arms.values()}) == len(arms)


def test_tfidf_arm_needs_no_language_model(tmp_path, topic_data):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", arms=["tfidf_lr"], reference="tfidf_lr"))
    assert build_arm(recipe, "tfidf_lr").recipe.config.run.stages == []


def test_recipe_defines_new_arms_on_top_of_builtin_ones(tmp_path, topic_data):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", arms=["scratch", "lora_r2"], arm_definitions={
        "lora_r2": {"based_on": "lora", "recipe": {"classify": {"peft": {"r": 2}}}}}))
    arm = build_arm(recipe, "lora_r2")
    assert arm.classify.peft.r == 2 and arm.classify.peft.alpha == 16
    assert arm.classify.init_from == recipe.config.lm_finetune.output_dir


@pytest.mark.parametrize("change, message", [
    ({"arms": ["scratch", "nope"]}, "unknown arm 'nope'"),
    ({"reference": "ulmfit"}, "reference: 'ulmfit' is not one of the sweep's arms"),
    ({"total_examples": [6]}, "exactly one of examples_per_class or total_examples"),
    ({"examples_per_class": [2, 2]}, "distinct positive"),
    ({"seeds": [0, -1]}, "seeds are non-negative"),
    ({"arms": ["scratch", "ulmfit_semi"]}, "ulmfit_semi needs unlabeled text"),
    ({"ablations": [{"title": "t", "rows": {"Full": "clf_full"}}]}, "ablation_examples_per_class: required"),
    ({"arm_definitions": {"bad": {"recipe": {"classify": {"data": {"path": "other/dataset"}}}}}, "arms": ["scratch", "bad"]},
     "arms must share it"),
    ({"arm_definitions": {"a": {"based_on": "b"}, "b": {"based_on": "a"}}, "arms": ["scratch", "a"]}, "based_on cycle"),
    ({"arms": ["scratch", "checkpoint_finetune"]}, "needs sweep.checkpoint"),
    ({"arm_definitions": {"scratch": {"max_examples_per_class": 0}}}, "stops at 0 examples per class"),
])
def test_bad_sweeps_fail_before_anything_runs(tmp_path, topic_data, change, message):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", **change))
    with pytest.raises(RecipeError, match=message):
        plan_sweep(recipe)
    assert not (tmp_path / "run").exists()


def test_budget_above_the_smallest_class_fails_before_training(tmp_path, topic_data):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", examples_per_class=[1, 41]))
    with pytest.raises(DataError, match="41 examples per class.*fewer examples of"):
        run_sweep(recipe)
    assert not (tmp_path / "run" / "tokenizer").exists()


def test_an_arm_capped_below_every_budget_fails_before_training(tmp_path, topic_data):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", examples_per_class=[2, 4],
                                         arm_definitions={"pretrained": {"max_examples_per_class": 1}}))
    with pytest.raises(RecipeError, match="pretrained would have no cells"):
        run_sweep(recipe)
    assert not (tmp_path / "run" / "tokenizer").exists()


def test_ablation_cells_at_another_budget_stay_off_the_learning_curves(tmp_path, topic_data):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", ablation_examples_per_class=2, ablations=[
        {"title": "Classifier fine-tuning", "rows": {"From scratch": "scratch", "Last layer": "clf_last"}}]))
    plan = plan_sweep(recipe)
    accuracy = {("scratch", 1): 0.4, ("scratch", 4): 0.8, ("scratch", 2): 0.9, ("clf_last", 2): 0.7}
    rows = [{"arm": arm, "arm_fingerprint": "f", "examples_per_class": b, "train_examples": 3 * b, "seed": seed,
             "accuracy": accuracy[(arm, b)] + 0.01 * seed, "f1_macro": 0.5, "cell_seconds": 10.0}
            for arm, b in accuracy for seed in (0, 1)]
    plan.output_dir.mkdir(parents=True)
    efficiency = write_sweep_report(plan, rows, [1, 4], 3, None, None)
    assert efficiency["arms"]["scratch"]["budgets"] == [3, 12] and set(efficiency["arms"]) == {"scratch"}
    summary = (plan.output_dir / "summary.md").read_text()
    assert "| Last layer | clf_last | 70.5 ± 0.7 |" in summary and "| From scratch | scratch | 90.5 ± 0.7 |" in summary
    assert "Cells, summed: 1 min 20 s" in summary  # every cell's cost, the ablation-only ones too


def test_multipliers_are_also_reported_against_tfidf(tmp_path, topic_data):
    plan = plan_sweep(load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", arms=["scratch", "tfidf_lr"])))
    accuracy = {("scratch", 1): 0.4, ("scratch", 4): 0.6, ("tfidf_lr", 1): 0.5, ("tfidf_lr", 4): 0.8}
    rows = [{"arm": arm, "arm_fingerprint": "f", "examples_per_class": b, "train_examples": 3 * b, "seed": seed,
             "accuracy": accuracy[(arm, b)], "f1_macro": 0.5, "cell_seconds": 1.0}
            for arm, b in accuracy for seed in (0, 1)]
    plan.output_dir.mkdir(parents=True)
    efficiency = write_sweep_report(plan, rows, [1, 4], 3, None, None)
    against = efficiency["other_references"]["tfidf_lr"]
    assert against["reference"] == "tfidf_lr" and against["arms"]["tfidf_lr"]["multiplier"] == [1.0, 1.0]
    assert against["arms"]["scratch"]["multiplier"][1] < 1 < efficiency["arms"]["tfidf_lr"]["multiplier"][0]
    summary = (plan.output_dir / "summary.md").read_text()
    assert "## Data multiplier vs scratch" in summary and "## Data multiplier vs tfidf_lr" in summary
    assert json.loads((plan.output_dir / "label_efficiency.json").read_text())["other_references"] == \
        efficiency["other_references"]


def test_total_budgets_split_equally_over_classes(tmp_path, topic_data):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", examples_per_class=None, total_examples=[4],
                                         arms=["tfidf_lr"], reference="tfidf_lr"))
    with pytest.raises(DataError, match="do not split equally over 3 classes"):
        run_sweep(recipe)


def test_results_file_appends_whole_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    append_result(path, {"a": 1})
    append_result(path, {"a": 2})
    path.write_text(path.read_text() + '{"a": 3')
    assert read_results(path) == [{"a": 1}, {"a": 2}]
    append_result(path, {"a": 4})
    assert read_results(path) == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_an_arm_can_stop_at_a_smaller_budget_than_the_reference(tmp_path, topic_data):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", examples_per_class=[1, 4, 16],
                                         arm_definitions={"pretrained": {"max_examples_per_class": 4}}))
    cells = plan_sweep(recipe).cells([1, 4, 16])
    assert {b for b, _, arm in cells if arm == "pretrained"} == {1, 4}
    assert {b for b, _, arm in cells if arm == "scratch"} == {1, 4, 16}
    assert cells == sorted(cells, key=lambda c: c[0])  # small budgets first


def test_probe_and_tfidf_cells_survive_a_fine_tuning_change(tmp_path, topic_data):
    before = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run"))
    after = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run"), ["classify.training.learning_rate=0.5"])
    for name, kept in [("tfidf_lr", True), ("frozen_probe", True), ("pretrained", False)]:
        assert (build_arm(before, name).fingerprint == build_arm(after, name).fingerprint) is kept


def test_every_arm_is_another_arm_under_another_run_seed(tmp_path, topic_data):
    # run.seed draws the test subset every cell is scored on: a cell scored under one seed is not reused.
    arms = ["tfidf_lr", "frozen_probe", "pretrained", "word2vec_lr"]
    before = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run"), [f"sweep.arms=[{','.join(arms)}]"])
    after = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run"), [f"sweep.arms=[{','.join(arms)}]", "run.seed=7"])
    for name in arms:
        assert build_arm(before, name).fingerprint != build_arm(after, name).fingerprint, name


def test_every_arm_of_an_ablation_table_runs_at_the_ablation_budget(tmp_path, topic_data):
    recipe = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run", ablation_examples_per_class=2, ablations=[
        {"title": "Classifier fine-tuning", "rows": {"From scratch": "scratch", "Last layer": "clf_last"}}]))
    cells = plan_sweep(recipe).cells([1, 4])
    assert {arm for b, _, arm in cells if b == 2} == {"scratch", "clf_last"}
    assert {b for b, _, arm in cells if arm == "clf_last"} == {2}


def test_fine_tuning_cells_survive_a_change_of_the_stage_only_keys(tmp_path, topic_data):
    before = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run"))
    after = load(tmp_path, sweep_recipe(topic_data, tmp_path / "run"), ["classify.examples_per_class=3",
                                                                         "classify.compare_scratch=true"])
    assert build_arm(before, "pretrained").fingerprint == build_arm(after, "pretrained").fingerprint


def test_a_stage_is_the_recipes_when_it_reads_the_same_whatever_runs_before_it(tmp_path, topic_data):
    # The recipe runs the tokenizer first; this arm's pretrain reads a prebuilt tokenizer, not that
    # stage: it is the recipe's stage, in the recipe's folder under one fingerprint, so neither `run`
    # nor the sweep rebuilds what the other built.
    raw = sweep_recipe(topic_data, tmp_path / "run", arms=["pretrained"], reference="pretrained")
    tokenizer_dir = tmp_path / "prebuilt-tokenizer"
    tokenizer_dir.mkdir()
    raw["pretrain"]["model"]["tokenizer"] = str(tokenizer_dir)
    recipe = load(tmp_path, raw)
    arm = build_arm(recipe, "pretrained")
    assert arm.recipe.config.run.stages == ["pretrain"]
    assert arm.classify.init_from == recipe.config.pretrain.output_dir
    assert arm.recipe.fingerprints()["pretrain"] == recipe.fingerprints()["pretrain"]


def test_literal_paths_to_a_moved_stage_follow_it(tmp_path, topic_data):
    # The recipe chains its stages by literal folders, not ${...}: an arm that changes pre-training
    # must still fine-tune and classify from its own pre-trained LM, not the recipe's.
    out = tmp_path / "run"
    raw = sweep_recipe(topic_data, out, arms=["scratch", "warm", "plain"], arm_definitions={
        "warm": {"recipe": {"pretrain": {"training": {"learning_rate": 3.0e-3}}}},
        "plain": {"recipe": {"classify": {"training": {"learning_rate": 1.0e-4}}}}})
    raw["lm_finetune"]["init_from"] = f"{out}/pretrain/"
    raw["classify"]["init_from"] = f"{out}/lm_finetune"
    recipe = load(tmp_path, raw)
    arm = build_arm(recipe, "warm").recipe.config
    assert arm.pretrain.output_dir.startswith(f"{out}/sweep/stages/pretrain-")
    assert arm.lm_finetune.init_from == arm.pretrain.output_dir
    assert arm.lm_finetune.output_dir.startswith(f"{out}/sweep/stages/lm_finetune-")
    assert arm.classify.init_from == arm.lm_finetune.output_dir
    # An arm that leaves the LM stages alone keeps the recipe's literal folders.
    plain = build_arm(recipe, "plain").recipe.config
    assert plain.classify.init_from == f"{out}/lm_finetune" and plain.run.stages == ["tokenizer", "pretrain", "lm_finetune"]


def test_a_damaged_results_line_is_named(tmp_path):
    path = tmp_path / "r.jsonl"
    append_result(path, {"a": 1})
    path.write_text(path.read_text() + "not json\n")
    with pytest.raises(DataError, match="r.jsonl: line 2 is not a JSON cell"):
        read_results(path)


def test_validate_takes_an_ensemble_whose_members_the_sweep_builds(tmp_path, topic_data, capsys):
    from pipelines.cli import main

    recipe = write_recipe(tmp_path / "sweep.yaml", sweep_recipe(topic_data, tmp_path / "run", arms=[
        "ulmfit", "ulmfit_bwd", "ulmfit_bi"], reference="ulmfit", also_against=[]))
    assert main(["validate", str(recipe)]) == 0, capsys.readouterr().err
    assert "sweep: ulmfit, ulmfit_bwd, ulmfit_bi" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()
