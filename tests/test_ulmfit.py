"""Each ULMFiT technique against the paper's definition, on the AWD-LSTM and on transformers."""

import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoModel, BertConfig, GPT2Config, LlamaConfig, TrainerCallback

from pipelines.models.awd_lstm import AwdLstmConfig, AwdLstmModel
from pipelines.models.classifier import TransferClassifier
from pipelines.trainer import ULMFiTTrainer
from pipelines.training_args import build_training_args
from pipelines.ulmfit import (concat_pool, discriminative_param_groups, encode_bpt3c, groups_to_train, layer_groups,
                              reverse_tokens, slanted_triangular)

V = 40
NO_DROPOUT = dict(output_dropout=0.0, hidden_dropout=0.0, input_dropout=0.0, embedding_dropout=0.0, weight_dropout=0.0)


def awd_body(**kw):
    torch.manual_seed(0)
    return AwdLstmModel(AwdLstmConfig(vocab_size=V, embedding_size=8, hidden_size=12, num_hidden_layers=3, **kw))


def llama_body():
    torch.manual_seed(0)
    return AutoModel.from_config(LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))


def gpt2_body():
    return AutoModel.from_config(GPT2Config(vocab_size=V, n_embd=16, n_layer=2, n_head=2, n_positions=64))


def bert_body():
    return AutoModel.from_config(BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=32, max_position_embeddings=64))


def classifier(body, num_labels=3, bptt=8):
    return TransferClassifier.from_body(body, num_labels=num_labels, bptt=bptt, max_tokens=64)


# --------------------------------------------------------------------------- STLR


def paper_stlr(t, T, cut_frac, ratio, eta_max):
    """ULMFiT eq. 3, written as in the paper."""
    cut = math.floor(T * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return eta_max * (1 + p * (ratio - 1)) / ratio


@pytest.mark.parametrize("T,cut_frac,ratio", [(1000, 0.1, 32), (250, 0.2, 10), (30, 0.1, 32)])
def test_stlr_matches_paper_formula(T, cut_frac, ratio):
    for t in range(T + 1):
        assert slanted_triangular(t, T, cut_frac, ratio) == pytest.approx(paper_stlr(t, T, cut_frac, ratio, 1.0))


def test_stlr_ends_at_min_when_steps_are_not_a_multiple_of_cut():
    # T=37: cut=3; the paper's decay length (27) would run below zero before T.
    values = [slanted_triangular(t, 37) for t in range(38)]
    assert values[37] == pytest.approx(1 / 32) and min(values) == pytest.approx(1 / 32)
    assert all(a >= b for a, b in zip(values[3:], values[4:]))


def test_stlr_shape():
    T = 1000
    values = [slanted_triangular(t, T) for t in range(T + 1)]
    assert values[0] == pytest.approx(1 / 32) and values[100] == pytest.approx(1.0) and values[T] == pytest.approx(1 / 32)
    assert max(values) == values[100]


def test_trainer_uses_stlr_and_discriminative_rates(tmp_path):
    # Not the defaults (0.1, 32): a trainer that ignores the recipe's cut_frac / ratio fails here.
    cut_frac, ratio = 0.25, 10.0
    model = classifier(awd_body())
    data = Dataset.from_dict({"input_ids": [[1, 2, 3, 4]] * 16, "attention_mask": [[1] * 4] * 16, "labels": [0, 1] * 8})
    args = build_training_args({"max_steps": 20, "learning_rate": 0.01, "per_device_train_batch_size": 4,
                                "slanted_triangular_lr": True, "discriminative_lr_factor": 2.6, "save_strategy": "no",
                                "stlr_cut_frac": cut_frac, "stlr_ratio": ratio, "weight_decay": 0.05,
                                "disable_tqdm": True}, str(tmp_path))
    seen = []

    class Record(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
            seen.append({g["layer_group"]: g["lr"] for g in optimizer.param_groups})

    trainer = ULMFiTTrainer(model=model, args=args, train_dataset=data, callbacks=[Record()])
    trainer.train()
    num_groups = len(layer_groups(model))
    assert len(seen) == 20
    for step, rates in enumerate(seen):
        top = 0.01 * paper_stlr(step, 20, cut_frac, ratio, 1.0)
        for group, lr in rates.items():
            assert lr == pytest.approx(top / 2.6 ** (num_groups - 1 - group))
    # Weight decay on weight matrices only: never on biases or normalisation parameters.
    names = {id(p): n for n, p in model.named_parameters()}
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            exempt = name.endswith("bias") or "norm" in name.lower() or param.ndim == 1
            assert group["weight_decay"] == (0.0 if exempt else 0.05), name


# --------------------------------------------------------------------------- layer groups and discriminative lr


@pytest.mark.parametrize("make_body,blocks", [(awd_body, 3), (llama_body, 2), (gpt2_body, 2), (bert_body, 2)])
def test_layer_groups_bottom_to_top(make_body, blocks):
    model = classifier(make_body())
    groups = layer_groups(model)
    assert len(groups) == blocks + 2  # embeddings, each block, top (norm/pooler + head)
    assert any("embed" in n or "wte" in n or "embeddings" in n for n in groups[0])
    assert all(n.startswith("head.") or "norm" in n or "ln_f" in n or "pooler" in n for n in groups[-1])
    assert any(n.startswith("head.") for n in groups[-1])
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters())  # each parameter exactly once


def test_discriminative_rates_divide_by_factor_per_group():
    model = classifier(awd_body())
    groups = discriminative_param_groups(model, lr=1.0, factor=2.6, weight_decay=0.1, decay_names=set())
    rates = {g["layer_group"]: g["lr"] for g in groups}
    top = max(rates)
    for group, lr in rates.items():
        assert lr == pytest.approx(2.6 ** -(top - group))
    flat = discriminative_param_groups(model, lr=1.0, factor=None, weight_decay=0.1, decay_names=set())
    assert {g["lr"] for g in flat} == {1.0}


# --------------------------------------------------------------------------- gradual unfreezing


def test_groups_to_train_schedule():
    assert [groups_to_train(e, 0, 4, None) for e in range(6)] == [1, 2, 3, 4, 4, 4]
    assert [groups_to_train(0, s, 4, 5) for s in (0, 4, 5, 9, 10, 15, 99)] == [1, 1, 2, 2, 3, 4, 4]


@pytest.mark.parametrize("make_body", [awd_body, llama_body])
def test_gradual_unfreezing_trains_exactly_the_unfrozen_groups(tmp_path, make_body):
    model = classifier(make_body())
    groups = layer_groups(model)
    n = len(groups)
    data = Dataset.from_dict({"input_ids": [[1, 2, 3, 4, 5]] * 8, "attention_mask": [[1] * 5] * 8, "labels": [0, 1] * 4})
    args = build_training_args({"num_train_epochs": n + 1, "learning_rate": 0.01, "per_device_train_batch_size": 4,
                                "gradual_unfreezing": True, "save_strategy": "no", "disable_tqdm": True}, str(tmp_path))
    snapshots = []

    class Snapshot(TrainerCallback):
        def on_epoch_begin(self, args, state, control, model=None, **kw):
            snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

        def on_train_end(self, args, state, control, model=None, **kw):
            self.on_epoch_begin(args, state, control, model=model)

    trainer = ULMFiTTrainer(model=model, args=args, train_dataset=data, callbacks=[Snapshot()])
    trainer.train()
    assert len(snapshots) == n + 2
    for epoch in range(n + 1):
        before, after = snapshots[epoch], snapshots[epoch + 1]
        trained = min(n, epoch + 1)
        for index, names in enumerate(groups):
            moved = [not torch.equal(before[k], after[k]) for k in names if k in before]
            if index >= n - trained:
                assert any(moved), f"epoch {epoch}: group {index} should train"
            else:
                assert not any(moved), f"epoch {epoch}: group {index} should be frozen"
    assert all(p.requires_grad for p in model.parameters())  # restored after training


def test_trainer_unfreezes_a_group_every_unfreeze_every_steps(tmp_path):
    # Through the trainer (which builds the callback from the arguments), one epoch of 12 steps:
    # by epochs only the top group would train; every 3 steps one more group joins.
    model = classifier(awd_body())
    data = Dataset.from_dict({"input_ids": [[1, 2, 3, 4]] * 48, "attention_mask": [[1] * 4] * 48, "labels": [0, 1] * 24})
    args = build_training_args({"num_train_epochs": 1, "learning_rate": 0.01, "per_device_train_batch_size": 4,
                                "gradual_unfreezing": True, "unfreeze_every_steps": 3, "save_strategy": "no",
                                "disable_tqdm": True}, str(tmp_path))
    groups = layer_groups(model)
    params = dict(model.named_parameters())
    trained = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):  # after this step's update
            trained.append(sum(all(params[n].requires_grad for n in g) for g in groups))

    ULMFiTTrainer(model=model, args=args, train_dataset=data, callbacks=[Record()]).train()
    assert trained == [min(len(groups), 1 + step // 3) for step in range(12)]
    # Training ended with the bottom group still frozen; afterwards every parameter trains again.
    assert trained[-1] < len(groups) and all(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- concat pooling


def test_concat_pool_is_last_max_mean_of_real_tokens():
    hidden = torch.tensor([[[1.0, -1.0], [3.0, 0.0], [2.0, 5.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 1, 0]])
    pooled = concat_pool(hidden, mask)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 5.0, 3.0, 5.0, 2.0, 4 / 3]]))


def test_concat_pool_reads_left_padded_rows_too():
    # The docstring allows padding on either side: the last real token is not mask.sum() - 1.
    hidden = torch.tensor([[[9.0, 9.0], [1.0, -1.0], [3.0, 0.0], [2.0, 5.0]]])
    pooled = concat_pool(hidden, torch.tensor([[0, 1, 1, 1]]))
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 5.0, 3.0, 5.0, 2.0, 4 / 3]]))


@pytest.mark.parametrize("pooling,part", [("last", 0), ("mean", 2)])
def test_pooling_last_and_mean_are_their_part_of_concat(pooling, part):
    concat = classifier(awd_body(**NO_DROPOUT)).eval()
    single = classifier(awd_body(**NO_DROPOUT)).eval()
    single.config.pooling = pooling
    single.load_state_dict(concat.state_dict(), strict=False)
    ids, mask = torch.tensor([[5, 6, 7, 8, 9, 0]]), torch.tensor([[1, 1, 1, 1, 1, 0]])
    with torch.no_grad():
        whole, one = concat.pool(ids, mask), single.pool(ids, mask)
    width = one.size(-1)
    assert whole.size(-1) == 3 * width
    torch.testing.assert_close(one, whole[:, part * width:(part + 1) * width])


@pytest.mark.parametrize("make_body", [awd_body, llama_body, gpt2_body])
def test_padding_changes_nothing(make_body):
    kwargs = NO_DROPOUT if make_body is awd_body else {}
    model = classifier(make_body(**kwargs), bptt=4).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    padded = torch.tensor([[5, 6, 7, 8, 9, 10, 0, 0, 0, 0, 0]])
    mask = (torch.arange(11) < 6).long().unsqueeze(0)
    with torch.no_grad():
        alone = model(input_ids=ids).logits
        in_batch = model(input_ids=padded, attention_mask=mask).logits
    torch.testing.assert_close(alone, in_batch, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- backward classifiers


def test_reverse_tokens_reverses_each_rows_real_tokens_and_keeps_its_padding():
    ids = torch.tensor([[1, 2, 3, 0, 0], [0, 0, 4, 5, 6], [7, 8, 9, 10, 11]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    reversed_ids = reverse_tokens(ids, mask)
    assert reversed_ids.tolist() == [[3, 2, 1, 0, 0], [0, 0, 6, 5, 4], [11, 10, 9, 8, 7]]
    assert torch.equal(reverse_tokens(reversed_ids, mask), ids)


@pytest.mark.parametrize("make_body", [awd_body, llama_body])
def test_a_backward_classifier_is_the_forward_one_reading_the_reversed_document(make_body):
    """Reversed inside the model, so a saved backward classifier needs no help at prediction time;
    padding stays where it was, so pooling still reads only the document's tokens."""
    kwargs = NO_DROPOUT if make_body is awd_body else {}
    forward = classifier(make_body(**kwargs), bptt=4).eval()
    backward = classifier(make_body(**kwargs), bptt=4).eval()
    backward.config.direction = "backward"
    backward.load_state_dict(forward.state_dict())
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 0, 0], [11, 12, 13, 14, 15, 16, 17, 18]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8])
    by_hand = torch.tensor([[10, 9, 8, 7, 6, 5, 0, 0], [18, 17, 16, 15, 14, 13, 12, 11]])
    with torch.no_grad():
        torch.testing.assert_close(backward(input_ids=ids, attention_mask=mask).logits,
                                   forward(input_ids=by_hand, attention_mask=mask).logits)
        assert not torch.allclose(backward(input_ids=ids, attention_mask=mask).logits,
                                  forward(input_ids=ids, attention_mask=mask).logits)


# --------------------------------------------------------------------------- BPT3C


def test_bpt3c_carries_lstm_state_across_chunks():
    body = awd_body(**NO_DROPOUT).eval()
    ids = torch.randint(1, V, (2, 23), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        whole = body(input_ids=ids).last_hidden_state
        chunked = encode_bpt3c(body, ids, mask, bptt=5)
    torch.testing.assert_close(chunked, whole)


def test_bpt3c_reads_transformer_documents_in_independent_chunks():
    body = llama_body().eval()
    ids = torch.randint(1, V, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        chunked = encode_bpt3c(body, ids, mask, bptt=4)
        second = body(input_ids=ids[:, 4:8]).last_hidden_state
    assert chunked.shape == (2, 12, 16)
    torch.testing.assert_close(chunked[:, 4:8], second)


def test_bpt3c_never_gives_a_transformer_a_chunk_that_is_all_padding():
    """A short document's later chunks are all padding. Attention over no position is NaN in some
    kernels (CUDA sdpa / flash-attention); transformers v5 on CPU stays finite (measured: eager and
    sdpa, fp32 and bf16), so the guard is checked where it acts: the masks the body receives."""
    body = llama_body().eval()
    seen = []
    forward = body.forward
    body.forward = lambda **kwargs: seen.append(kwargs["attention_mask"].clone()) or forward(**kwargs)
    ids = torch.randint(1, V, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0  # the second document: 3 tokens, then two chunks of padding only
    with torch.no_grad():
        hidden = encode_bpt3c(body, ids, mask, bptt=4)
    assert len(seen) == 3 and all((chunk.sum(dim=1) > 0).all() for chunk in seen)
    assert torch.isfinite(hidden).all()
    # The document's own chunk is read as given.
    assert seen[0].tolist() == mask[:, :4].tolist()


def test_classifier_reads_documents_longer_than_the_context():
    # GPT-2 with 64 positions classifies a 150-token document: chunks of 32, all pooled.
    model = classifier(gpt2_body(), bptt=32).eval()
    model.config.max_tokens = 150
    ids = torch.randint(1, V, (1, 150), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        changed_tail = ids.clone()
        changed_tail[0, 140:] = (changed_tail[0, 140:] + 1) % V
        logits_tail = model(input_ids=changed_tail).logits
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    assert not torch.allclose(logits, logits_tail)  # tokens past the context still matter


# --------------------------------------------------------------------------- LoRA


def test_lora_on_awd_lstm_targets_embedding_and_merges_away():
    from pipelines.config import PeftSection
    from pipelines.peft_adapters import apply_lora, lora_targets, merge_lora

    model = classifier(awd_body())
    assert lora_targets(model) == ["backbone.embed_tokens"]  # the LSTM weights are not Linear layers
    wrapped = apply_lora(model, PeftSection(r=2, alpha=4))
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("lora_embedding" in n for n in trainable) and any("head" in n for n in trainable)
    assert not any("layers" in n for n in trainable)  # the LSTM stays frozen
    ids = torch.randint(1, V, (2, 10))
    wrapped(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    assert all(wrapped.get_parameter(n).grad is not None for n in trainable if "lora" in n)
    merged = merge_lora(wrapped)
    assert type(merged) is TransferClassifier and not any("lora" in n for n, _ in merged.named_parameters())
