"""Folders lm-transfer writes load in sentence-transformers and give the vectors `lm-transfer embed` gives."""

import json

import numpy as np
import pytest
import torch

from pipelines.config import DataConfig
from pipelines.embed import embed, load_embeddings, load_encoder

pytest.importorskip("sentence_transformers")


def _sentence_transformer(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _texts(topic_data):
    rows = [json.loads(line) for line in (topic_data / "test.jsonl").read_text().splitlines()]
    # (one long text: more tokens than the models read, so truncation is compared too)
    return [r["text"] for r in rows[:6]] + [" ".join(r["text"] for r in rows[:12])]


@pytest.mark.parametrize("stage,width", [("classifier", 3 * 32), ("pretrain", 32)])
def test_a_stage_folder_gives_embeds_vectors_in_sentence_transformers(awd_run, topic_data, stage, width):
    folder = awd_run[0] / "run" / stage
    texts = _texts(topic_data)
    ours = load_encoder(str(folder)).encode(texts, progress=False)
    theirs = _sentence_transformer(folder).encode(texts)
    assert theirs.shape == (len(texts), width)  # (a classifier: its concat pooling; a language model: mean)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)


def _body(kind: str, vocab: int):
    torch.manual_seed(0)
    if kind == "awd_lstm":
        from pipelines.models.awd_lstm import AwdLstmConfig, AwdLstmModel

        return AwdLstmModel(AwdLstmConfig(vocab_size=vocab, embedding_size=16, hidden_size=24, num_hidden_layers=2))
    from transformers import LlamaConfig, LlamaModel

    return LlamaModel(LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))


@pytest.mark.parametrize("kind", ["awd_lstm", "llama"])
@pytest.mark.parametrize("direction,pooling", [("backward", "concat"), ("forward", "last")])
def test_bpt3c_and_backward_reading_carry_over_to_sentence_transformers(tmp_path, awd_run, topic_data, kind,
                                                                        direction, pooling):
    from pipelines.backbones import load_tokenizer
    from pipelines.models.classifier import TransferClassifier
    from pipelines.stages.classify import save_classifier

    tokenizer = load_tokenizer(str(awd_run[0] / "run" / "tokenizer"))
    model = TransferClassifier.from_body(_body(kind, len(tokenizer)), num_labels=2, pooling=pooling,
                                         direction=direction, bptt=8, max_tokens=40,
                                         pad_token_id=tokenizer.pad_token_id).eval()
    save_classifier(model, tokenizer, ["a", "b"], tmp_path)
    texts = _texts(topic_data)
    ours = load_encoder(str(tmp_path)).encode(texts, progress=False)
    np.testing.assert_allclose(_sentence_transformer(tmp_path).encode(texts), ours, atol=1e-5)
    # The document's first 40 tokens, last token first for a backward model, pooled.
    from pipelines.ulmfit import reverse_tokens

    ids, mask = tokenizer(texts[-1:], truncation=True, max_length=40, return_tensors="pt").values()
    with torch.no_grad():
        read = model.pool(reverse_tokens(ids, mask) if direction == "backward" else ids, mask)
    np.testing.assert_allclose(ours[-1:], read.numpy(), atol=1e-5)
    # AutoModel loads the folder as that reader, whatever length it is given (pooler_output: the vector).
    from transformers import AutoModel

    whole = tokenizer(texts[-1:], return_tensors="pt", truncation=True, max_length=10_000)
    assert whole["input_ids"].size(1) > 40
    with torch.no_grad():
        vector = AutoModel.from_pretrained(tmp_path).eval()(**whole).pooler_output
    np.testing.assert_allclose(vector.numpy(), ours[-1:], atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_an_embeddings_folder_is_the_sentence_transformer_of_its_vectors(tmp_path, awd_run, topic_data, normalize):
    # The classifier read with mean pooling, not its own concat (as the demo's embed stage does).
    embed(str(awd_run[0] / "run" / "classifier"), DataConfig(path=str(topic_data)), tmp_path / "index",
          pooling="mean", normalize=normalize)
    data, meta = load_embeddings(tmp_path / "index")
    vectors = np.asarray(data["embedding"])
    theirs = _sentence_transformer(tmp_path / "index").encode(list(data["text"]))
    assert vectors.shape[1] == meta["dim"] == 32
    np.testing.assert_allclose(theirs, vectors, atol=1e-5)
    assert np.allclose(np.linalg.norm(theirs, axis=1), 1.0) == normalize
    # `embed` of the folder itself makes them again (its files say mean pooling, its length).
    again = load_encoder(str(tmp_path / "index"))
    assert (again.model.config.pooling, again.max_length) == ("mean", meta["max_length"])


def test_a_transformer_language_model_is_embedded_from_what_it_reads_in_one_pass(tmp_path, awd_run, topic_data):
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipelines.backbones import load_tokenizer
    from pipelines.sentence_encoder import language_model_reads, read_defaults, write_files

    tokenizer = load_tokenizer(str(awd_run[0] / "run" / "tokenizer"))
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                      max_position_embeddings=24))
    lm.save_pretrained(tmp_path)
    tokenizer.model_max_length = 24  # (as the LM stage saves it: the blocks it was trained on)
    tokenizer.save_pretrained(tmp_path)
    assert language_model_reads(False, 24) == 24 and language_model_reads(True, 24) == 512
    write_files(tmp_path, "mean", language_model_reads(False, 24), 16)
    assert read_defaults(tmp_path) == {"pooling": "mean", "max_length": 24}
    texts = _texts(topic_data)
    ours = load_encoder(str(tmp_path)).encode(texts, progress=False)
    np.testing.assert_allclose(_sentence_transformer(tmp_path).encode(texts), ours, atol=1e-5)


def test_older_pooling_files_are_read_too(tmp_path):
    from pipelines.sentence_encoder import read_defaults

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 384, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    assert read_defaults(tmp_path) == {"pooling": "mean", "max_length": 256}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    assert read_defaults(tmp_path) == {"max_length": 256}  # (a pooling lm-transfer has not: embed's own default)
