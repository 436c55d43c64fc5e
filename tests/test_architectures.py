"""RNN vs Transformer measures on tiny models: what each carries to predict the next word, and how
far back a replaced token still moves the prediction."""

import types

import pytest
import torch
from torch import nn

from pipelines.architectures import distance_influence, next_word_state_bytes, seconds_per_new_token


def tiny_lstm():
    from pipelines.models.awd_lstm import AwdLstmConfig, AwdLstmForCausalLM

    torch.manual_seed(0)
    return AwdLstmForCausalLM(AwdLstmConfig(vocab_size=40, embedding_size=8, hidden_size=12, num_hidden_layers=3,
                                            pad_token_id=0)).eval()


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                                        pad_token_id=0)).eval()


def test_an_lstm_carries_the_same_state_for_any_prefix_length():
    lm = tiny_lstm()
    sizes = {n: next_word_state_bytes(lm, torch.randint(1, 40, (1, n))) for n in (4, 64, 300)}
    # h and c per layer, float32: layers 0-1 are hidden_size wide, the last embedding_size wide
    assert set(sizes.values()) == {(2 * 12 + 2 * 12 + 2 * 8) * 4}


def test_a_transformers_kv_cache_grows_linearly_with_the_prefix():
    lm = tiny_llama()
    sizes = {n: next_word_state_bytes(lm, torch.randint(1, 40, (1, n))) for n in (4, 64, 300)}
    # keys and values: layers x kv heads x head dim per token, float32
    per_token = 2 * 2 * 1 * 8 * 4
    assert sizes == {n: n * per_token for n in sizes}


class OnlyOnePosition(nn.Module):
    """A stand-in LM whose next-word logits depend on the token `back` positions from the end alone."""

    def __init__(self, back: int, vocab_size: int = 30):
        super().__init__()
        self.back, self.table = back, nn.Embedding(vocab_size, vocab_size)
        self.config = types.SimpleNamespace(vocab_size=vocab_size)

    def forward(self, input_ids):
        logits = self.table(input_ids[:, -self.back]).unsqueeze(1).expand(-1, input_ids.size(1), -1)
        return types.SimpleNamespace(logits=logits)


@pytest.mark.parametrize("back", [1, 3, 7])
def test_distance_influence_moves_only_where_the_model_looks(back):
    torch.manual_seed(0)
    model = OnlyOnePosition(back)
    ids = torch.randint(0, 30, (16, 10))
    influence = distance_influence(model, ids, distances=list(range(1, 11)))
    assert influence[back] > 0.05
    assert all(value == pytest.approx(0.0, abs=1e-7) for d, value in influence.items() if d != back)


def test_distance_influence_is_the_kl_of_the_two_next_word_distributions():
    lm = tiny_llama()
    ids = torch.randint(1, 40, (3, 12))
    got = distance_influence(lm, ids, distances=[5], seed=4)[5]
    generator = torch.Generator().manual_seed(4)
    changed = ids.clone()
    changed[:, 7] = (ids[:, 7] + torch.randint(1, 40, (3,), generator=generator)) % 40
    with torch.no_grad():
        p = torch.log_softmax(lm(ids).logits[:, -1].double(), -1)
        q = torch.log_softmax(lm(changed).logits[:, -1].double(), -1)
    assert got == pytest.approx(float(torch.nn.functional.kl_div(q, p, log_target=True, reduction="batchmean")),
                                rel=1e-4)
    assert not torch.equal(changed[:, 7], ids[:, 7])


def test_distances_outside_the_input_are_refused():
    with pytest.raises(ValueError, match="between 1 and"):
        distance_influence(tiny_llama(), torch.randint(1, 40, (1, 5)), distances=[6])


@pytest.mark.parametrize("make", [tiny_lstm, tiny_llama])
def test_seconds_per_new_token_is_measured_for_both(make):
    assert 0 <= seconds_per_new_token(make(), torch.randint(1, 40, (1, 16)), new_tokens=4) < 5


def test_distance_influence_resolves_the_tiny_kl_of_a_far_token():
    # A far token moves a trained LM's next-word distribution by KL ~1e-8 over thousands of words:
    # summed in float32 that is lost in rounding (it came out negative); the measure keeps it.
    torch.manual_seed(0)
    model = OnlyOnePosition(back=1, vocab_size=8000)
    with torch.no_grad():
        model.table.weight.mul_(1e-4)
    ids = torch.randint(0, 8000, (4, 3))
    got = distance_influence(model, ids, distances=[1], seed=2)[1]
    shift = torch.randint(1, 8000, (4,), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        p = torch.log_softmax(model.table(ids[:, -1]).double(), -1)
        q = torch.log_softmax(model.table((ids[:, -1] + shift) % 8000).double(), -1)
    expected = float((p.exp() * (p - q)).sum(-1).mean())
    assert 1e-10 < expected < 1e-7
    assert got == pytest.approx(expected, rel=1e-3)
