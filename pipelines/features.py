"""Document features from a language model's body: BPT3C over the document, then the classifier's
pooling (concat: [last, max, mean] of the hidden states; or last, or mean), the same features the
classifier head sees. Used by the sweep's frozen-probe arm and by `lm-transfer embed`."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from tqdm.auto import tqdm

from .models.classifier import TransferClassifier


@torch.no_grad()
def pooled_features(model: TransferClassifier, tokenizer, texts: list[str], max_length: int, batch_size: int = 32,
                    bf16: bool = False, progress: bool = True) -> np.ndarray:
    """(len(texts), pooled width) float32 features. Texts are batched longest first so padding
    stays small; the rows come back in the order given."""
    model.eval()
    device = next(model.parameters()).device
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths)[::-1]
    out = np.zeros((len(texts), 0), dtype=np.float32)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext())
    for start in tqdm(range(0, len(texts), batch_size), desc="features", unit="batch", disable=not progress):
        rows = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt").to(device)
        with autocast:
            pooled = model.embed(batch["input_ids"], batch["attention_mask"]).float().cpu().numpy()
        if out.shape[1] == 0:
            out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
        out[rows] = pooled
    return out
