"""A logistic-regression head, fitted by scikit-learn on a body's pooled vectors, as the linear layer of
a classifier folder: the body and the head in one `TransferClassifier` (head: linear), which
`lm-transfer predict`, `transformers.pipeline()` and `publish` serve like any classifier here; no
pickle. What SetFit and the frozen probe train becomes a model this way.

    weight, bias = linear_weights(fitted, label_names)     # LogisticRegression, or scaler + LR
    model = linear_classifier(body, weight, bias, label_names, pooling="mean", normalize=True, max_tokens=256)
"""

from __future__ import annotations

import numpy as np

# The bias of a class the head never saw (a self-trained student may not): exp(-1e4) is 0 in float32.
UNSEEN_CLASS_BIAS = -1e4


def linear_weights(head, label_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(weight [classes, features], bias [classes]) whose softmax(weight @ x + bias) equals the fitted
    head's predict_proba(x): a LogisticRegression, or a Pipeline of StandardScaler and one (the scaler
    folded into the weights). Binary LR's one row w becomes the rows (0, w): softmax([0, z]) is
    (1 - sigmoid(z), sigmoid(z))."""
    steps = [step for _, step in head.steps] if hasattr(head, "steps") else [head]
    *scalers, regression = steps
    coef, intercept = np.asarray(regression.coef_, dtype=np.float64), np.asarray(regression.intercept_, dtype=np.float64)
    if coef.shape[0] == 1 and len(regression.classes_) == 2:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    for scaler in scalers:  # (x - mean) / scale, folded: w / scale, b - w . mean / scale
        if type(scaler).__name__ != "StandardScaler":
            raise TypeError(f"a head of {type(scaler).__name__} does not fold into a linear layer")
        mean = scaler.mean_ if scaler.with_mean else np.zeros(coef.shape[1])
        scale = scaler.scale_ if scaler.with_std else np.ones(coef.shape[1])
        coef = coef / scale
        intercept = intercept - coef @ mean
    weight = np.zeros((len(label_names), coef.shape[1]))
    bias = np.full(len(label_names), UNSEEN_CLASS_BIAS)
    rows = np.asarray(regression.classes_, dtype=int)  # (heads here are fitted on label positions)
    weight[rows], bias[rows] = coef, intercept
    return weight.astype(np.float32), bias.astype(np.float32)


def linear_classifier(body, weight: np.ndarray, bias: np.ndarray, label_names: list[str], pooling: str,
                      normalize: bool, max_tokens: int, tokenizer=None, bptt: int | None = None,
                      direction: str = "forward"):
    """A TransferClassifier of `body` (a transformers model) with the linear head (weight, bias) over
    its pooled vectors, read in chunks of `bptt` tokens (default: one pass) of at most max_tokens."""
    import torch

    from .models.classifier import TransferClassifier

    special = {} if tokenizer is None else {k: getattr(tokenizer, k) for k in
                                             ("pad_token_id", "bos_token_id", "eos_token_id")}
    model = TransferClassifier.from_body(body, num_labels=len(label_names), pooling=pooling, head="linear",
                                         normalize=normalize, bptt=bptt or max_tokens, max_tokens=max_tokens,
                                         direction=direction, **special)
    with torch.no_grad():
        model.head.out_proj.weight.copy_(torch.as_tensor(weight))
        model.head.out_proj.bias.copy_(torch.as_tensor(bias))
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}
    return model.eval()
