import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from pipelines.models import awd_lstm
from pipelines.models.awd_lstm import AwdLstmConfig, AwdLstmForCausalLM, AwdLstmModel

V, T = 50, 12
NO_DROPOUT = dict(output_dropout=0.0, hidden_dropout=0.0, input_dropout=0.0, embedding_dropout=0.0, weight_dropout=0.0)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # Tiny ops get much slower (0.2 s -> 25 s) when torch's thread pool competes for the 2 cores with another process.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(**overrides):
    kwargs = dict(vocab_size=V, embedding_size=8, hidden_size=16, num_hidden_layers=2)
    return AwdLstmConfig(**{**kwargs, **overrides})


def tiny_lm(**overrides):
    torch.manual_seed(0)
    return AwdLstmForCausalLM(tiny_config(**overrides))


@pytest.fixture
def ids():
    return torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(1))


def test_shapes_and_registration(ids):
    lm = tiny_lm()
    out = lm.model(ids)
    assert out.last_hidden_state.shape == (3, T, 8)
    assert [h.shape for h, _ in out.state] == [(1, 3, 16), (1, 3, 8)]
    assert out.state[0][0].requires_grad  # not detached
    assert isinstance(AutoModel.from_config(tiny_config()), AwdLstmModel)
    assert AutoConfig.for_model("awd_lstm").model_type == "awd_lstm"
    assert AwdLstmForCausalLM.is_recurrent and not AwdLstmForCausalLM.accepts_loss_kwargs


def test_save_load_roundtrip_keeps_logits_and_tying(tmp_path, ids):
    lm = tiny_lm().eval()
    lm.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is AwdLstmForCausalLM
    torch.testing.assert_close(loaded(ids).logits, lm(ids).logits, rtol=0, atol=0)
    emb, head = loaded.get_input_embeddings().weight, loaded.get_output_embeddings().weight
    assert emb.data_ptr() == head.data_ptr()
    with torch.no_grad():
        emb[3].add_(1.0)
    assert torch.equal(head[3], emb[3])


def test_untied_roundtrip(tmp_path, ids):
    lm = tiny_lm(tie_word_embeddings=False).eval()
    assert lm.lm_head.weight.data_ptr() != lm.model.embed_tokens.weight.data_ptr()
    lm.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(ids).logits, lm(ids).logits, rtol=0, atol=0)


def test_eval_deterministic_train_stochastic(ids):
    lm = tiny_lm().eval()
    torch.testing.assert_close(lm(ids).logits, lm(ids).logits, rtol=0, atol=0)
    lm.train()
    assert not torch.allclose(lm(ids).logits, lm(ids).logits)

    lm = tiny_lm(**NO_DROPOUT)
    train_logits = lm.train()(ids).logits
    torch.testing.assert_close(train_logits, lm.eval()(ids).logits)


@pytest.mark.parametrize("name", ["input_dropout", "hidden_dropout", "output_dropout", "weight_dropout"])
def test_each_dropout_acts_only_in_training(name, ids):
    model = AwdLstmModel(tiny_config(**{**NO_DROPOUT, name: 0.5}))
    train_out = model.train()(ids).last_hidden_state
    assert not torch.allclose(train_out, model.eval()(ids).last_hidden_state)
    if name == "output_dropout":  # applied last, so its locked mask is visible: whole channels are zero
        zero = train_out == 0
        assert zero.any() and torch.equal(zero, zero[:, :1].expand_as(zero))


def test_embedding_dropout_drops_word_types(ids):
    p = 0.5
    model = AwdLstmModel(tiny_config(**{**NO_DROPOUT, "embedding_dropout": p})).train()
    torch.manual_seed(3)
    dropped = model._embed(ids)
    full = model.embed_tokens(ids)
    n_zeroed = 0
    for tok in ids.unique():
        rows, ref = dropped[ids == tok], full[ids == tok]
        if rows.abs().sum() == 0:
            n_zeroed += 1
        else:
            torch.testing.assert_close(rows, ref / (1 - p))
    assert 0 < n_zeroed < len(ids.unique())


def test_reimport_does_not_crash():
    # In a subprocess: reloading here would re-register new classes and break the other tests' isinstance checks.
    code = "import importlib, pipelines.models.awd_lstm as m; importlib.reload(m)"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)


def test_locked_dropout_shares_mask_over_time():
    x = torch.ones(4, 10, 6)
    y = awd_lstm.locked_dropout(x, 0.5, training=True)
    assert torch.equal(y, y[:, :1].expand_as(y))  # same mask at every time step
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert awd_lstm.locked_dropout(x, 0.5, training=False) is x


def test_weight_dropout(ids):
    lm = tiny_lm(**{**NO_DROPOUT, "weight_dropout": 0.5})
    eval_logits = lm.eval()(ids).logits
    lm.train()
    train_logits = lm(ids).logits
    assert not torch.allclose(train_logits, eval_logits)
    # The LSTM really ran on the dropped matrix: about half its entries are zero.
    layer = lm.model.layers[0]
    assert 0.3 < (layer.lstm.weight_hh_l0 == 0).float().mean() < 0.7
    train_logits.sum().backward()
    for layer in lm.model.layers:
        assert layer.weight_hh_l0_raw.grad is not None and layer.weight_hh_l0_raw.grad.abs().sum() > 0
    assert "model.layers.0.weight_hh_l0_raw" in lm.state_dict()
    assert not any(k.endswith("lstm.weight_hh_l0") for k in lm.state_dict())


def test_state_carrying_matches_single_pass(ids):
    model = tiny_lm().model.eval()
    full = model(ids)
    first = model(ids[:, :5])
    second = model(ids[:, 5:], state=first.state)
    halves = torch.cat([first.last_hidden_state, second.last_hidden_state], dim=1)
    torch.testing.assert_close(halves, full.last_hidden_state)
    for (h1, c1), (h2, c2) in zip(second.state, full.state):
        torch.testing.assert_close(h1, h2)
        torch.testing.assert_close(c1, c2)


def test_loss_matches_manual_and_decreases(ids):
    lm = tiny_lm().eval()
    labels = ids.clone()
    labels[0, -4:] = -100  # padding is ignored
    out = lm(ids, labels=labels)
    logits = out.logits[:, :-1].reshape(-1, V)
    manual = F.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, manual)

    lm = tiny_lm().train()
    batch = torch.arange(10).repeat(2, 2)  # a repeated, learnable sequence
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = lm(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_generate(ids):
    lm = tiny_lm().eval()
    out = lm.generate(ids[:, :4], max_new_tokens=3, do_sample=False)
    assert out.shape == (3, 7)
    assert torch.equal(out[:, :4], ids[:, :4])
    # Greedy decoding must agree with a manual argmax over the recomputed prefix.
    assert torch.equal(out[:, 4], lm(ids[:, :4]).logits[:, -1].argmax(-1))
    # Every step must see the whole prefix, through the carried state: compare each step's logits with a
    # fresh forward pass over the prefix.
    for use_cache in (False, True):
        gen = lm.generate(
            ids[:, :4], max_new_tokens=4, do_sample=False, use_cache=use_cache,
            output_logits=True, return_dict_in_generate=True,
        )
        for step, step_logits in enumerate(gen.logits):
            torch.testing.assert_close(step_logits, lm(gen.sequences[:, : 4 + step]).logits[:, -1])


def test_generate_feeds_one_new_token_a_step_from_the_carried_state(ids):
    lm = tiny_lm().eval()
    fed = []
    lm.model.register_forward_hook(lambda module, args, kwargs, out: fed.append(args[0].shape[1]), with_kwargs=True)
    lm.generate(ids[:, :4], max_new_tokens=5, do_sample=False)
    assert fed == [4, 1, 1, 1, 1]  # the prompt once, then each new token alone: the state is the cache


def test_beam_search_continues_each_beam_from_its_own_state():
    lm = tiny_lm().eval()
    for p in lm.model.layers.parameters():  # a state that matters: a beam given another's state scores wrong
        p.data *= 4
    torch.manual_seed(0)
    prompt = torch.randint(3, 40, (2, 5))
    beams = lm.generate(prompt, max_new_tokens=4, num_beams=3, do_sample=False, length_penalty=0.0,
                        return_dict_in_generate=True, output_scores=True)
    with torch.no_grad():
        log_probs = torch.log_softmax(lm(beams.sequences).logits.float(), -1)
    rescored = log_probs[:, 4:-1].gather(-1, beams.sequences[:, 5:, None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(beams.sequences_scores, rescored, rtol=1e-4, atol=1e-4)
    assert torch.equal(lm.generate(prompt, max_new_tokens=4, num_beams=3, do_sample=False, use_cache=False),
                       beams.sequences)


def test_a_given_state_is_the_context_the_whole_prompt_follows(ids):
    lm = tiny_lm().eval()
    with torch.no_grad():
        state = lm(ids[:, :3]).state
        expected = lm(ids[:, :5]).logits[:, -1]
    got = lm.generate(ids[:, 3:5], state=state, max_new_tokens=1, do_sample=False, output_logits=True,
                      return_dict_in_generate=True).logits[0]
    torch.testing.assert_close(got, expected)


def test_sequence_classification_from_an_lm_folder_reuses_the_body(tmp_path, ids):
    from transformers import AutoModelForSequenceClassification

    import pipelines  # noqa: F401  (registers the classifier)

    lm = tiny_lm()
    lm.save_pretrained(tmp_path / "lm")
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path / "lm", num_labels=3).eval()
    assert type(classifier).__name__ == "AwdLstmForSequenceClassification"
    for name, value in lm.model.state_dict().items():
        torch.testing.assert_close(classifier.model.state_dict()[name], value, rtol=0, atol=0)
    logits = classifier(input_ids=ids).logits
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()
    # the new head is initialised, buffers included (batch-norm statistics start at 0 mean, 1 variance)
    assert torch.equal(classifier.head.norm1.running_var, torch.ones_like(classifier.head.norm1.running_var))
    classifier.save_pretrained(tmp_path / "clf")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "clf").eval()
    torch.testing.assert_close(reloaded(input_ids=ids).logits, logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["input_dropout", "hidden_dropout", "output_dropout", "weight_dropout"])
def test_drop_mult_scales_each_dropout(name, ids, monkeypatch):
    """Each dropout runs at its configured rate times drop_mult (0.6 x 0.5 = 0.3), the others at 0 x 0.5."""
    used = {"locked": [], "weight": []}
    locked, dropout = awd_lstm.locked_dropout, awd_lstm.F.dropout
    monkeypatch.setattr(awd_lstm, "locked_dropout", lambda x, p, training: used["locked"].append(p) or locked(x, p, training))
    monkeypatch.setattr(awd_lstm.F, "dropout", lambda x, p, training: used["weight"].append(p) or dropout(x, p, training))
    model = AwdLstmModel(tiny_config(**{**NO_DROPOUT, name: 0.6, "drop_mult": 0.5, "num_hidden_layers": 3})).train()
    model(ids)
    expected = {"input_dropout": [0.3, 0, 0, 0], "hidden_dropout": [0, 0.3, 0.3, 0], "output_dropout": [0, 0, 0, 0.3]}
    assert used["locked"] == pytest.approx(expected.get(name, [0, 0, 0, 0]))
    assert used["weight"] == ([pytest.approx(0.3)] * 3 if name == "weight_dropout" else [])


def test_drop_mult_scales_embedding_dropout():
    ids = torch.arange(4000).unsqueeze(0)
    model = AwdLstmModel(tiny_config(**{**NO_DROPOUT, "vocab_size": 4000, "embedding_dropout": 0.6, "drop_mult": 0.5}))
    torch.manual_seed(0)
    zeroed = (model.train()._embed(ids).abs().sum(-1) == 0).float().mean().item()
    assert zeroed == pytest.approx(0.3, abs=0.03)  # 0.6 alone would zero ~60 % of the word types


def test_language_model_and_classifier_dropouts_are_fastais():
    lm = AwdLstmConfig()
    assert [lm.output_dropout, lm.hidden_dropout, lm.input_dropout, lm.embedding_dropout, lm.weight_dropout,
            lm.drop_mult] == [0.1, 0.15, 0.25, 0.02, 0.2, 1.0]
    assert awd_lstm.CLASSIFIER_DROPOUTS == {"output_dropout": 0.4, "hidden_dropout": 0.3, "input_dropout": 0.4,
                                            "embedding_dropout": 0.05, "weight_dropout": 0.5, "drop_mult": 1.0}
