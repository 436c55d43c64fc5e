"""ULMFiT's techniques (Howard & Ruder 2018), each in one place, each backbone-agnostic.

- layer_groups / discriminative_param_groups: discriminative fine-tuning (sec. 3.2)
- slanted_triangular / stlr_scheduler: slanted triangular learning rates (eq. 3)
- GradualUnfreezing: gradual unfreezing (sec. 3.3)
- concat_pool: concat pooling h_c = [h_T, maxpool(H), meanpool(H)] (sec. 3.3)
- encode_bpt3c: BPT3C, documents read in bptt-sized chunks (sec. 3.3)
- reverse_tokens: a backward model's input, for the bidirectional classifier (sec. 4)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import TrainerCallback

# --------------------------------------------------------------------------- layer groups


def _block_list(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The backbone's stack of layers: the longest ModuleList whose children share one type
    (AWD-LSTM `layers`, Llama `layers`, GPT-2 `h`, BERT `encoder.layer`)."""
    best = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(child) for child in module}) == 1 and (best is None or len(module) > len(best[1])):
                best = (name, module)
    return best


def layer_groups(model: nn.Module) -> list[list[str]]:
    """Trainable-or-not parameter names split into groups, bottom to top: [embeddings and
    everything before the layer stack, layer 0, ..., layer N-1, everything after (final norm,
    LM or classifier head)]. Tied weights appear once, in the lowest group that owns them."""
    found = _block_list(model)
    names = [n for n, _ in model.named_parameters()]  # registration order; tied params once
    if found is None:
        return [names]
    prefix, blocks = found
    groups: list[list[str]] = [[] for _ in range(len(blocks) + 2)]
    seen_blocks = False
    for n in names:
        if n.startswith(prefix + "."):
            index = int(n[len(prefix) + 1:].split(".")[0])
            groups[index + 1].append(n)
            seen_blocks = True
        else:
            groups[-1 if seen_blocks else 0].append(n)
    return [g for g in groups if g]


def discriminative_param_groups(model: nn.Module, lr: float, factor: float | None, weight_decay: float,
                                decay_names: set[str]) -> list[dict]:
    """Optimizer param groups where group l (counted from the top, l=0) gets lr / factor**l
    (ULMFiT: eta^{l-1} = eta^l / 2.6). Parameters frozen at this point are left out."""
    params = dict(model.named_parameters())
    groups = layer_groups(model)
    out = []
    for depth, names in enumerate(reversed(groups)):
        group_lr = lr / (factor ** depth) if factor else lr
        for decay in (True, False):
            chosen = [params[n] for n in names if params[n].requires_grad and ((n in decay_names) == decay)]
            if chosen:
                out.append({"params": chosen, "lr": group_lr, "weight_decay": weight_decay if decay else 0.0,
                            "layer_group": len(groups) - 1 - depth})
    return out


# --------------------------------------------------------------------------- STLR


def slanted_triangular(step: int, total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """ULMFiT eq. 3 as a multiplier of eta_max: rises linearly for cut = floor(T * cut_frac)
    steps from 1/ratio to 1, then decays linearly back to 1/ratio at step T. The paper's decay
    length cut * (1/cut_frac - 1) equals T - cut when T * cut_frac is whole; T - cut is used so
    that other T still end at 1/ratio instead of going negative."""
    cut = max(1, math.floor(total_steps * cut_frac))
    if step < cut:
        p = step / cut
    else:
        p = max(0.0, 1 - (step - cut) / max(1, total_steps - cut))
    return (1 + p * (ratio - 1)) / ratio


def stlr_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, cut_frac: float, ratio: float):
    # One multiplier for every group keeps the discriminative ratios between groups.
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: slanted_triangular(step, total_steps, cut_frac, ratio))


# --------------------------------------------------------------------------- gradual unfreezing


def groups_to_train(epoch: int, step: int, num_groups: int, every_steps: int | None) -> int:
    """How many layer groups, counted from the top, train at this point: one at the start and one
    more after every epoch (or every `every_steps` optimizer steps)."""
    stage = step // every_steps if every_steps else epoch
    return min(num_groups, 1 + stage)


class GradualUnfreezing(TrainerCallback):
    """Sets requires_grad so only the top `groups_to_train` layer groups train. Parameters that were
    frozen before training (e.g. by LoRA) stay frozen. Gradients of frozen groups are never
    computed, and AdamW skips parameters without gradients, so frozen weights do not move."""

    def __init__(self, model: nn.Module, every_steps: int | None = None):
        self.model = model
        self.every_steps = every_steps
        self.groups = layer_groups(model)
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        self.active = -1

    def apply(self, count: int) -> None:
        if count == self.active:
            return
        self.active = count
        top = {n for g in self.groups[len(self.groups) - count:] for n in g}
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in self.trainable and n in top)

    def on_train_begin(self, args, state, control, **kwargs):
        self.apply(groups_to_train(int(state.epoch or 0), state.global_step, len(self.groups), self.every_steps))

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.apply(groups_to_train(int(round(state.epoch or 0)), state.global_step, len(self.groups), self.every_steps))

    def on_step_begin(self, args, state, control, **kwargs):
        if self.every_steps:
            self.apply(groups_to_train(0, state.global_step, len(self.groups), self.every_steps))

    def on_train_end(self, args, state, control, **kwargs):
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in self.trainable)


# --------------------------------------------------------------------------- pooling and BPT3C


def concat_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[last, max, mean] over the non-padding positions of (B, T, H) -> (B, 3H). Padding may be
    on either side; it changes nothing."""
    mask = mask.to(torch.bool)
    positions = torch.arange(hidden.size(1), device=hidden.device).expand_as(mask)
    last_index = torch.where(mask, positions, -1).argmax(dim=1)
    last = hidden[torch.arange(hidden.size(0), device=hidden.device), last_index]
    filled = mask.unsqueeze(-1)
    max_pool = hidden.masked_fill(~filled, torch.finfo(hidden.dtype).min).amax(dim=1)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(hidden.dtype)
    mean_pool = hidden.masked_fill(~filled, 0).sum(dim=1) / count
    return torch.cat([last, max_pool, mean_pool], dim=-1)


def encode_bpt3c(body: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, bptt: int) -> torch.Tensor:
    """Runs the backbone over a (right-padded) document batch in bptt-sized chunks and returns
    the hidden states of all positions (B, T, H). A recurrent body carries its state from chunk
    to chunk; a transformer reads each chunk on its own (its context is one chunk)."""
    recurrent = getattr(body, "is_recurrent", False)
    state, outputs = None, []
    for start in range(0, input_ids.size(1), bptt):
        ids = input_ids[:, start:start + bptt]
        mask = attention_mask[:, start:start + bptt]
        if recurrent:
            out = body(input_ids=ids, attention_mask=mask, state=state)
            state = out.state
        else:
            # A row that is all padding in this chunk would make attention softmax over nothing
            # (NaN); let it see one token. Its outputs are masked out by the pooling anyway.
            mask = mask.clone()
            mask[mask.sum(dim=1) == 0, 0] = 1
            out = body(input_ids=ids, attention_mask=mask)
        outputs.append(out.last_hidden_state)
    return torch.cat(outputs, dim=1)


def reverse_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's tokens in reverse order, padding left where it was (either side): a backward
    model reads the document last token first, as its language model was trained."""
    mask = attention_mask.to(torch.bool)
    positions = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)
    # The real tokens' positions in order, then the padding's (a stable sort on "is padding").
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    rank = mask.cumsum(dim=1) - 1  # k for the k-th real token
    source = order.gather(1, (mask.sum(dim=1, keepdim=True) - 1 - rank).clamp(min=0))
    return input_ids.gather(1, torch.where(mask, source, positions))
