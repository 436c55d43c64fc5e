"""Masked-LM training that scores only the masked positions.

A masked LM is trained on the ~15 % of positions that were masked, yet transformers' *ForMaskedLM
heads project every position onto the vocabulary. For a small encoder that projection dominates:
all-MiniLM-L6-v2's 384x30522 decoder costs about as much per token as its six layers. Scoring only
the masked positions gives the same loss and gradients for a fraction of the compute.

Done with two forward hooks instead of a wrapper model, so the model Trainer holds (and DDP wraps,
and save_pretrained writes) stays the stock class: the model's pre-hook keeps the labels of masked
positions only and remembers where they are; the output projection's pre-hook keeps the hidden
states of those positions. The model's own loss (`logits.view(-1, V)` against `labels.view(-1)`) then
sees matching shapes. The returned logits are (masked positions, V), not (B, T, V).
"""

from __future__ import annotations

import threading

from torch import nn
from torch.utils.hooks import RemovableHandle

IGNORE_INDEX = -100  # DataCollatorForLanguageModeling's label for positions that are not scored


def score_masked_positions_only(model: nn.Module) -> list[RemovableHandle]:
    """Installs the hooks on a *ForMaskedLM model; returns their handles (call .remove() to undo)."""
    projection = model.get_output_embeddings()
    if projection is None:
        raise ValueError(f"{type(model).__name__} has no output projection to restrict")
    # Per thread: nn.DataParallel runs replicas that share these hooks in threads of their own.
    selected = threading.local()

    def keep_masked_labels(module, args, kwargs):
        labels = kwargs.get("labels")
        if labels is None:  # inference: score every position as usual
            selected.positions = None
            return None
        selected.positions = labels != IGNORE_INDEX
        return args, {**kwargs, "labels": labels[selected.positions]}

    def keep_masked_hidden(module, args):
        positions, selected.positions = getattr(selected, "positions", None), None
        if positions is None:
            return None
        hidden, *rest = args
        if hidden.shape[:2] != positions.shape:  # a head that is not applied per position
            raise ValueError(f"{type(model).__name__}: the output projection reads {tuple(hidden.shape)}, not one "
                             f"vector per labelled position {tuple(positions.shape)}")
        return (hidden[positions], *rest)

    return [model.register_forward_pre_hook(keep_masked_labels, with_kwargs=True),
            projection.register_forward_pre_hook(keep_masked_hidden)]
