"""Tiny all-stages runs through the CLI: losses fall, the classifier beats chance, outputs load
through the Auto classes, stages are skipped or re-run by config, bad data leaves nothing behind."""

import json

import pytest
import torch
from conftest import tiny_recipe, write_recipe
from huggingface_hub import ModelCard
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from pipelines.cli import main


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def test_all_stages_lm_loss_falls_and_classifier_beats_chance(awd_run):
    root, _ = awd_run
    run = root / "run"
    losses = metrics(run / "pretrain")["train_loss_curve"]
    assert losses[-1] < losses[0] - 1.0, losses
    # better than guessing uniformly over the vocabulary, and fine-tuning does not undo pre-training
    assert metrics(run / "lm_finetune")["eval_perplexity"] < 0.5 * metrics(run / "tokenizer")["vocab_size"]
    finetune = metrics(run / "lm_finetune")
    assert finetune["eval_perplexity"] < 1.2 * metrics(run / "pretrain")["eval_perplexity"]
    assert finetune["eval_perplexity"] <= finetune["eval_perplexity_before_training"]
    assert metrics(run / "pretrain")["eval_perplexity_before_training"] is None
    classify = metrics(run / "classifier")
    assert classify["test_accuracy"] > 0.4 and classify["train_examples"] == 24  # chance: 1/3 (measured: 0.49)


SENTENCE_TRANSFORMERS_FILES = {"modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                               "1_Pooling"}


def test_stage_folders_hold_the_model_and_nothing_half_written(awd_run):
    run = awd_run[0] / "run"
    for stage in ("tokenizer", "pretrain", "lm_finetune", "classifier"):
        files = {p.name for p in (run / stage).iterdir()}
        assert {"metrics.json", "recipe.yaml", "tokenizer.json"} <= files
        if stage != "tokenizer":  # exactly what goes to the Hub: no training state, no stamp files
            hub_files = {"config.json", "model.safetensors", "README.md", "tokenizer_config.json",
                         "generation_config.json", *SENTENCE_TRANSFORMERS_FILES}
            assert files - {"metrics.json", "recipe.yaml", "tokenizer.json"} <= hub_files, files
            assert {"config.json", "model.safetensors", "README.md", *SENTENCE_TRANSFORMERS_FILES} <= files
    assert not list(run.glob("*.partial")) and not list(run.glob("*.work"))


def test_classifier_and_lm_reload_through_auto_classes_with_identical_logits(awd_run):
    run = awd_run[0] / "run"
    tokenizer = AutoTokenizer.from_pretrained(run / "classifier")
    batch = tokenizer(["the match was won by the team", "garlic butter sauce"], return_tensors="pt", padding=True)
    first = AutoModelForSequenceClassification.from_pretrained(run / "classifier").eval()
    second = AutoModelForSequenceClassification.from_pretrained(run / "classifier").eval()
    with torch.no_grad():
        torch.testing.assert_close(first(**batch).logits, second(**batch).logits, rtol=0, atol=0)
    assert first.config.id2label == {0: "food", 1: "sport", 2: "tech"}
    lm = AutoModelForCausalLM.from_pretrained(run / "lm_finetune")
    assert type(lm).__name__ == "AwdLstmForCausalLM"


def test_rerun_skips_current_stages_and_reruns_changed_ones(awd_run, capsys):
    root, recipe = awd_run
    run = root / "run"
    before = {s: (run / s / "metrics.json").stat().st_mtime for s in ("pretrain", "lm_finetune", "classifier")}
    capsys.readouterr()
    assert main(["run", str(recipe), "classify.training.num_train_epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "[tokenizer] up to date" in out and "[pretrain] up to date" in out and "[lm_finetune] up to date" in out
    assert "[classify] running" in out
    after = {s: (run / s / "metrics.json").stat().st_mtime for s in before}
    assert after["pretrain"] == before["pretrain"] and after["classifier"] > before["classifier"]
    assert "test accuracy (transferred)" in out and str(run / "classifier") in out


def test_bad_data_fails_with_one_line_and_leaves_nothing(awd_run, capsys):
    root, recipe = awd_run
    out = root / "bad"
    code = main(["run", str(recipe), f"run.output_dir={out}", "run.stages=[tokenizer,classify]",
                 "classify.init_from=null", "classify.model.tokenizer=${tokenizer.output_dir}",
                 "classify.examples_per_class=1000"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: {recipe}: classify: examples_per_class=1000 but split 'train' has fewer examples of "
                       "the classes 'food' (40), 'sport' (40), 'tech' (40) (column 'label'); set "
                       "classify.examples_per_class to at most 40, or add examples of those classes (or remove the "
                       "classes from both splits)")
    # found before the first stage: nothing was trained or written
    assert not out.exists()


def test_transformer_backbone_with_lora_and_scratch_baseline(tmp_path, topic_data):
    recipe = tiny_recipe(topic_data, tmp_path / "run", backbone="llama")
    recipe["run"]["stages"] = ["tokenizer", "pretrain", "classify"]
    recipe["classify"].update(init_from="${pretrain.output_dir}", compare_scratch=True,
                              peft={"method": "lora", "r": 4, "alpha": 8})
    assert main(["run", str(write_recipe(tmp_path / "llama.yaml", recipe))]) == 0
    result = metrics(tmp_path / "run" / "classifier")
    assert result["test_accuracy"] > 0.6 and result["test_accuracy"] > result["scratch"]["test_accuracy"]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "classifier")
    assert not any("lora" in n for n, _ in model.named_parameters())  # merged before saving
    assert result["parameters"] == sum(p.numel() for p in model.parameters())  # the card's count is the saved model's
    assert type(model.backbone).__name__ == "LlamaModel"
    # the LM's tokenizer stops where it was trained (32-token blocks); an AWD-LSTM read its text as a stream
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "run" / "pretrain").model_max_length == 32
    # the cards of a transformer run: a plain transformers LM, the classifier beside its baseline
    lm_card = ModelCard.load(tmp_path / "run" / "pretrain" / "README.md")
    assert lm_card.data.pipeline_tag == "text-generation" and "llama" in lm_card.data.tags
    assert "AutoModelForCausalLM.from_pretrained" in lm_card.text and "import pipelines" not in lm_card.text
    card = ModelCard.load(tmp_path / "run" / "classifier" / "README.md").text
    assert f"| Accuracy | {100 * result['test_accuracy']:.1f} % | {100 * result['scratch']['test_accuracy']:.1f} % |" in card
    assert "(with the from-scratch comparison below)" in card and "peft:" in card


def test_masked_lm_checkpoint_is_fine_tuned_with_its_own_objective(tmp_path, topic_data, monkeypatch):
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling

    import pipelines.stages.lm
    from pipelines.stages.tokenizer import build_tokenizer

    masking = []  # what the LM stage's collator was told: unmasked, an encoder would learn to copy

    class Recorded(DataCollatorForLanguageModeling):
        def __post_init__(self):
            masking.append(self.mlm)
            super().__post_init__()

    monkeypatch.setattr(pipelines.stages.lm, "DataCollatorForLanguageModeling", Recorded)

    texts = [json.loads(line)["text"] for line in (topic_data / "train.jsonl").read_text().splitlines()]
    tokenizer = build_tokenizer(texts, "bpe", 300)
    tokenizer.add_special_tokens({"mask_token": "<mask>"})
    torch.manual_seed(0)
    encoder = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                         pad_token_id=tokenizer.pad_token_id))
    encoder.save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    recipe = tiny_recipe(topic_data, tmp_path / "run")
    recipe["run"]["stages"] = ["lm_finetune", "classify"]
    recipe["lm_finetune"].update(init_from=str(tmp_path / "encoder"))
    recipe["lm_finetune"]["training"].update(num_train_epochs=8, learning_rate=1e-3, discriminative_lr_factor=None)
    assert main(["run", str(write_recipe(tmp_path / "bert.yaml", recipe))]) == 0
    lm = metrics(tmp_path / "run" / "lm_finetune")
    assert lm["objective"] == "masked" and masking == [True]
    assert lm["train_loss_curve"][-1] < lm["train_loss_curve"][0] - 0.5, lm["train_loss_curve"]
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "classifier")
    assert type(classifier.backbone).__name__ == "BertModel"
    card = ModelCard.load(tmp_path / "run" / "lm_finetune" / "README.md")
    assert card.data.pipeline_tag == "fill-mask" and card.data.base_model is None  # a local encoder, not a Hub id
    assert f"| Initialised from | `{tmp_path / 'encoder'}` |" in card.text
    assert "A masked language model (bert)" in card.text and "AutoModelForMaskedLM.from_pretrained" in card.text
    classifier_card = (tmp_path / "run" / "classifier" / "README.md").read_text()
    assert f"| initial weights | `{tmp_path / 'encoder'}` |" in classifier_card  # the lineage's root


def test_single_stage_needs_earlier_stages_built(tmp_path, topic_data, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(topic_data, tmp_path / "run"))
    assert main(["run", str(recipe), "--stage", "classify"]) == 2
    assert "needs stage 'tokenizer' built" in capsys.readouterr().err
    assert main(["run", str(recipe), "--stage", "tokenizer"]) == 0
    assert (tmp_path / "run" / "tokenizer").exists() and not (tmp_path / "run" / "pretrain").exists()


def test_dev_split_ends_training_with_the_epoch_of_lowest_dev_loss(awd_run, tmp_path):
    from transformers import DataCollatorWithPadding

    from pipelines.config import load_recipe
    from pipelines.data import classification_splits, dev_split_indices
    from pipelines.stages.classify import build_classifier, classifier_tokenizer, fit_and_test, tokenize

    # a learning rate high enough to overfit 6 labels per class, so the last epoch is rarely the best
    recipe = load_recipe(awd_run[1], ["classify.dev_fraction=0.34", "classify.training.num_train_epochs=6",
                                      "classify.training.learning_rate=0.03"])
    cfg = recipe.config.classify
    train, test, names = classification_splits(cfg.data, 6, 0)
    tokenizer = classifier_tokenizer(cfg, "test")
    train_tok, test_tok = tokenize(train, tokenizer, 64, "train"), tokenize(test, tokenizer, 64, "test")
    model = build_classifier(cfg, tokenizer, names, "test")
    result = fit_and_test(cfg, model, tokenizer, train_tok, test_tok, 0, str(tmp_path / "work"), quiet=True)
    scores = result["metrics"]
    assert scores["dev_examples"] == 6  # 2 of each class's 6
    curve = scores["dev_loss_curve"]
    assert len(curve) == 6 and scores["chosen_epoch"] == 1 + curve.index(min(curve))
    assert scores["chosen_epoch"] < 6, curve  # else the check below could not tell the best from the last
    # the weights returned are that epoch's: their dev loss is the curve's minimum
    _, dev_rows = dev_split_indices(train_tok["label"], 0.34, 0)
    batch = DataCollatorWithPadding(tokenizer)([train_tok[i] for i in dev_rows])
    with torch.no_grad():
        loss = result["model"].eval()(**batch).loss.item()
    assert loss == pytest.approx(min(curve), abs=1e-3)


@pytest.mark.parametrize("setting", ["freeze_body", "peft"])
def test_the_classifier_trains_what_freeze_body_and_peft_say(awd_run, setting):
    """clf_last trains the head alone; a peft section trains LoRA adapters and the head, never the
    body's own weights. Without the setting the whole body trains."""
    from pipelines.config import load_recipe
    from pipelines.stages.classify import build_classifier, classifier_tokenizer

    _, recipe = awd_run
    sets = {"freeze_body": ["classify.freeze_body=true"],
            "peft": ["classify.peft={method: lora, r: 4, alpha: 8}"]}[setting]
    for with_setting in (False, True):
        cfg = load_recipe(recipe, ["classify.training.gradual_unfreezing=false"] + (sets if with_setting else [])).config.classify
        model = build_classifier(cfg, classifier_tokenizer(cfg, "test"), ["food", "sport", "tech"], "test")
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        body = [n for n in trainable if ".head." not in f".{n}" and "lora_" not in n]
        if not with_setting:
            assert body and not any("lora_" in n for n in trainable)
        elif setting == "freeze_body":
            assert trainable and not body
        else:
            assert any("lora_" in n for n in trainable) and not body


def test_a_backward_language_model_gives_a_backward_classifier(tmp_path, topic_data, monkeypatch):
    """direction: backward trains the LM on reversed documents, is saved in its config, and the
    classifier built on it reads backward (classify.direction left unset); reading it forward, or
    continuing it forward, is refused."""
    from pipelines.cli import main

    recipe = tiny_recipe(topic_data, tmp_path / "run")
    recipe["run"]["stages"] = ["tokenizer", "pretrain", "classify"]
    recipe["pretrain"]["direction"] = "backward"
    recipe["pretrain"]["training"]["num_train_epochs"] = 2
    recipe["classify"].update(init_from="${pretrain.output_dir}", examples_per_class=2)
    recipe["classify"]["training"]["num_train_epochs"] = 1
    path = write_recipe(tmp_path / "r.yaml", recipe)
    import pipelines.stages.lm as lm_stage

    reversed_text, token_file = [], lm_stage.token_file
    monkeypatch.setattr(lm_stage, "token_file", lambda *a, **k: reversed_text.append(k["backward"]) or token_file(*a, **k))
    assert main(["run", str(path)]) == 0
    assert reversed_text == [True, True]  # its training and held-out text, each document reversed
    run = tmp_path / "run"
    assert metrics(run / "pretrain")["direction"] == "backward"
    assert AutoConfig.from_pretrained(run / "pretrain").direction == "backward"
    assert AutoConfig.from_pretrained(run / "classifier").direction == "backward"
    assert main(["run", str(path), "classify.direction=forward", "--stage", "classify"]) == 2
    recipe["run"]["stages"] = ["lm_finetune"]
    recipe["lm_finetune"].update(init_from=str(run / "pretrain"), direction="forward")
    assert main(["run", str(write_recipe(tmp_path / "f.yaml", recipe))]) == 2
    for folder in ("pretrain", "classifier"):
        assert "backward" in (run / folder / "README.md").read_text()  # the cards say which way it reads


def test_an_lm_tokenizer_keeps_the_length_its_model_was_trained_on():
    from pipelines.stages.lm import UNBOUNDED, trained_length

    assert trained_length(UNBOUNDED, 128, carry_state=False) == 128  # a model from scratch on 128-token blocks
    assert trained_length(512, 128, carry_state=False) == 512  # a checkpoint pre-trained on longer text
    assert trained_length(UNBOUNDED, 70, carry_state=True) == UNBOUNDED  # truncated BPTT over a stream


@pytest.mark.parametrize("history,best_at_end,evaluated", [
    ([{"loss": 3.0, "step": 5}, {"eval_loss": 1.0, "step": 5}], False, False),  # Trainer scored the last step
    ([{"eval_loss": 1.0, "step": 4}, {"loss": 3.0, "step": 5}], False, True),   # an earlier step only
    ([{"eval_loss": 1.0, "step": 5}], True, True),                              # the kept model may be another
    ([], False, True)])
def test_the_lm_is_scored_once_after_training(history, best_at_end, evaluated):
    from types import SimpleNamespace

    from pipelines.stages.lm import _final_evaluation

    calls = []
    trainer = SimpleNamespace(state=SimpleNamespace(log_history=history, global_step=5),
                              args=SimpleNamespace(load_best_model_at_end=best_at_end),
                              evaluate=lambda: calls.append(1) or {"eval_loss": 2.0})
    assert _final_evaluation(trainer)["eval_loss"] == (2.0 if evaluated else 1.0)
    assert len(calls) == int(evaluated)
