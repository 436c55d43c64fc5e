"""RNN vs Transformer, measured on any causal language model of this package (an AWD-LSTM, or a
transformers model such as the Llama): what each carries to predict the next word, how fast it
generates, and how much a word far back still matters.

- `next_word_state_bytes`: the memory a model keeps after reading a prefix to predict what follows:
  an LSTM's hidden and cell states (the same for any prefix length), a transformer's KV cache
  (one key and one value vector per layer and token: it grows with the prefix).
- `seconds_per_new_token`: `generate()` time per token after the prompt.
- `distance_influence`: how far the next-word distribution moves (KL divergence) when the token d
  positions back is replaced by another, for each d: "early words fade".

benchmarks/architectures.py (`make compare-architectures`) runs these on trained models."""

from __future__ import annotations

import time

import torch


def _cache_of(outputs):
    """A transformers model's KV cache in its outputs (`cache` since transformers 5, `past_key_values` before)."""
    return outputs.get("cache", None) if outputs.get("cache", None) is not None else outputs.get("past_key_values")


@torch.no_grad()
def next_word_state_bytes(model, input_ids: torch.Tensor) -> int:
    """Bytes the model holds, after reading `input_ids`, to go on predicting: the recurrent state of
    an LSTM, the KV cache of a transformer (every layer's keys and values)."""
    outputs = model(input_ids=input_ids, use_cache=True)
    if getattr(model.config, "model_type", None) == "awd_lstm":
        return sum(t.nelement() * t.element_size() for layer in outputs.state for t in layer)
    cache = _cache_of(outputs)
    if cache is None:
        raise ValueError(f"{type(model).__name__} returned no KV cache (use_cache=True)")
    return sum(t.nelement() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


@torch.no_grad()
def seconds_per_new_token(model, input_ids: torch.Tensor, new_tokens: int = 32, repeats: int = 3) -> float:
    """Mean wall time of each generated token after the first (greedy, cache on): the time of
    generating new_tokens + 1 tokens less that of generating 1 (the prompt's own pass), over
    new_tokens; the fastest of `repeats` tries (timing noise only ever adds)."""
    def timed(count: int) -> float:
        started = time.perf_counter()
        model.generate(input_ids, max_new_tokens=count, min_new_tokens=count, do_sample=False, use_cache=True,
                       pad_token_id=model.config.pad_token_id if model.config.pad_token_id is not None else 0)
        return time.perf_counter() - started

    timed(1)  # warm-up: first-call allocations
    return min(max(0.0, timed(new_tokens + 1) - timed(1)) / new_tokens for _ in range(repeats))


@torch.no_grad()
def distance_influence(model, input_ids: torch.Tensor, distances: list[int], seed: int = 0) -> dict[int, float]:
    """For each distance d, the mean over rows of KL(p || q), where p is the next-word distribution
    after a row's tokens and q the same after its token d positions back (d = 1: the last one) is
    replaced by a random other token. Rows of one batch, no padding."""
    length = input_ids.size(1)
    if any(not 1 <= d <= length for d in distances):
        raise ValueError(f"distances must be between 1 and the input's length {length}, got {distances}")
    vocab_size = model.config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    # In float64: a far token moves the prediction by KL ~1e-8, below the error of summing it in float32
    # (which made such KLs negative).
    reference = torch.log_softmax(model(input_ids=input_ids).logits[:, -1].double(), dim=-1)
    out = {}
    for d in distances:
        changed = input_ids.clone()
        position = length - d
        # a random token other than the one there: shift by 1..vocab-1 modulo the vocabulary
        shift = torch.randint(1, vocab_size, (input_ids.size(0),), generator=generator)
        changed[:, position] = (input_ids[:, position] + shift) % vocab_size
        moved = torch.log_softmax(model(input_ids=changed).logits[:, -1].double(), dim=-1)
        kl = (reference.exp() * (reference - moved)).sum(dim=-1)
        out[d] = float(kl.mean())
    return out
