"""Scoring only the masked positions changes the cost of a masked-LM step, not its loss or gradients."""

import pytest
import torch
from transformers import (BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, DistilBertConfig,
                          DistilBertForMaskedLM, PreTrainedTokenizerFast)
from tokenizers import Tokenizer, models

from pipelines.masked_lm import score_masked_positions_only

VOCAB = 50


def tiny_tokenizer():
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB - 5)])}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
                                   pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")


def tiny(kind):
    torch.manual_seed(0)
    if kind == "bert":
        return BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=32, max_position_embeddings=32))
    return DistilBertForMaskedLM(DistilBertConfig(vocab_size=VOCAB, dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                                  max_position_embeddings=32))


def masked_batch():
    torch.manual_seed(1)
    collator = DataCollatorForLanguageModeling(tiny_tokenizer(), mlm=True, mlm_probability=0.3)
    batch = collator([{"input_ids": torch.randint(5, VOCAB, (12,)).tolist()} for _ in range(4)])
    batch["labels"][0, :] = -100  # a row with nothing masked must not disturb the others
    return batch


def loss_and_gradients(model, batch):
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_same_loss_and_gradients_as_scoring_every_position(kind):
    model, batch = tiny(kind).eval(), masked_batch()  # eval: no dropout, so two passes can be compared
    assert (batch["labels"] != -100).sum() < batch["labels"].numel() / 2
    full_loss, full_grads = loss_and_gradients(model, batch)
    handles = score_masked_positions_only(model)
    loss, grads = loss_and_gradients(model, batch)
    torch.testing.assert_close(loss, full_loss)
    assert grads.keys() == full_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], full_grads[name], msg=name)
    # the logits are the masked positions' only
    assert model(**batch).logits.shape == ((batch["labels"] != -100).sum(), VOCAB)
    for handle in handles:
        handle.remove()
    assert model(**batch).logits.shape == (*batch["input_ids"].shape, VOCAB)


def test_without_labels_every_position_is_scored():
    model, batch = tiny("bert"), masked_batch()
    score_masked_positions_only(model)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.shape == (*batch["input_ids"].shape, VOCAB)
    # and a labelled call after an unlabelled one still scores only the masked positions
    assert model(**batch).logits.shape[0] == (batch["labels"] != -100).sum()


def test_a_head_not_applied_per_position_is_refused_not_mis_scored():
    model, batch = tiny("bert"), masked_batch()
    score_masked_positions_only(model)
    model.cls.predictions.transform = torch.nn.Sequential(model.cls.predictions.transform, torch.nn.Flatten(0, 1))
    with pytest.raises(ValueError, match="one vector per labelled position"):
        model(**batch)
