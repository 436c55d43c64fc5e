"""Language-model data: token files (cached, streamed or not), shuffled blocks, and the streams of
truncated BPTT read by one or several processes, with the state the trainer carries between them."""

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from datasets import Dataset, IterableDataset
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from pipelines.errors import DataError
from pipelines.lm_data import ShuffledBlocks, StreamBlocks, token_file
from pipelines.stages.tokenizer import build_tokenizer

TEXTS = ["the cat sat on the mat", "a dog ran", "", "birds sing in the morning light", "x"]


@pytest.fixture(autouse=True)
def single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(TEXTS * 20, "bpe", vocab_size=300)


def _batches(dataset, batch_size, processes=1, process=0):
    sampler = BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False)
    if processes > 1:  # what accelerate's prepare() gives process `process` of `processes`
        sampler = BatchSamplerShard(sampler, num_processes=processes, process_index=process)
    return [torch.stack([dataset[i]["input_ids"] for i in batch]) for batch in sampler]


def test_token_file_is_each_text_then_eos_and_is_written_once(tmp_path, tokenizer, monkeypatch):
    texts = Dataset.from_dict({"text": TEXTS})
    ids = token_file(texts, tokenizer, "text", masked=False, cache_dir=tmp_path, split="train")
    expected = [t for text in TEXTS for t in tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    assert ids.dtype == np.uint16 and ids.tolist() == expected
    monkeypatch.setattr(Dataset, "map", lambda *a, **k: pytest.fail("tokenized again"))
    again = token_file(texts, tokenizer, "text", masked=False, cache_dir=tmp_path, split="train")
    assert again.tolist() == expected and len(list(tmp_path.iterdir())) == 1


def test_a_backward_token_file_reverses_each_document_then_ends_it(tmp_path, tokenizer):
    texts = Dataset.from_dict({"text": TEXTS[:2]})
    ids = token_file(texts, tokenizer, "text", False, tmp_path, "train", backward=True)
    first, second = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS[:2])
    eos = tokenizer.eos_token_id
    assert ids.tolist() == first[::-1] + [eos] + second[::-1] + [eos]
    assert len(list(tmp_path.iterdir())) == 1 and token_file(texts, tokenizer, "text", False, tmp_path, "train")[0] == first[0]


def test_streamed_texts_give_the_same_tokens_and_blocks_as_in_memory(tmp_path, tokenizer):
    texts = Dataset.from_dict({"text": TEXTS * 300})  # more than one tokenizer batch
    in_memory = token_file(texts, tokenizer, "text", False, tmp_path / "a", "train", processes=2)
    streamed = token_file(texts.to_iterable_dataset(num_shards=3), tokenizer, "text", False, tmp_path / "b", "train",
                          identity="the same texts")
    assert np.array_equal(in_memory, streamed)
    for blocks in (lambda ids: ShuffledBlocks(ids, 16), lambda ids: StreamBlocks(ids, rows=4, bptt=16)):
        a, b = blocks(in_memory), blocks(streamed)
        assert len(a) == len(b) and all(torch.equal(a[i]["input_ids"], b[i]["input_ids"]) for i in range(len(a)))


def test_shuffled_blocks_are_consecutive_pieces_and_a_short_corpus_is_one_block():
    blocks = ShuffledBlocks(np.arange(10), block_size=3)
    assert [blocks[i]["input_ids"].tolist() for i in range(len(blocks))] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert [ShuffledBlocks(np.arange(2), 70)[0]["input_ids"].tolist()] == [[0, 1]]
    with pytest.raises(DataError):
        ShuffledBlocks(np.arange(1), 70)


def test_each_row_of_a_batch_continues_the_same_row_of_the_batch_before():
    # 4 streams of 25 tokens read 7 at a time: pieces of 7, 7, 7 and a last one of 4 in every row
    blocks = StreamBlocks(np.arange(103), rows=4, bptt=7)
    batches = _batches(blocks, 4)
    assert [b.shape for b in batches] == [(4, 7)] * 3 + [(4, 4)]
    rows = torch.cat(batches, dim=1)
    assert rows.tolist() == [list(range(r * 25, r * 25 + 25)) for r in range(4)]  # each row one contiguous stream


def test_a_one_token_tail_is_dropped_and_too_little_text_is_refused():
    blocks = StreamBlocks(np.arange(2 * 15), rows=2, bptt=7)  # streams of 15: 7 + 7 + a 1-token tail
    assert [b.shape[1] for b in _batches(blocks, 2)] == [7, 7]
    with pytest.raises(DataError, match="cannot fill 8 streams"):
        StreamBlocks(np.arange(10), rows=8, bptt=7)


def test_under_two_processes_each_process_reads_its_own_streams_in_order():
    blocks = StreamBlocks(np.arange(120), rows=4, bptt=5)  # 2 rows per process, streams of 30
    seen = []
    for process in range(2):
        rows = torch.cat(_batches(blocks, 2, processes=2, process=process), dim=1)
        for row in rows.tolist():
            assert row == list(range(row[0], row[0] + 30))  # continuous from batch to batch
            seen.append(row[0])
    assert sorted(seen) == [0, 30, 60, 90]  # every stream read once


def _stack(items):
    ids = torch.stack([item["input_ids"] for item in items])
    return {"input_ids": ids, "labels": ids}


def _tiny_trainer(tmp_path, tokens, carry_state, epochs=2, rows=2, bptt=5):
    from pipelines.models.awd_lstm import AwdLstmConfig, AwdLstmForCausalLM
    from pipelines.trainer import ULMFiTTrainer
    from pipelines.training_args import build_training_args

    torch.manual_seed(0)
    model = AwdLstmForCausalLM(AwdLstmConfig(vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=2))
    args = build_training_args({"num_train_epochs": epochs, "per_device_train_batch_size": rows, "save_strategy": "no",
                                "disable_tqdm": True, "per_device_eval_batch_size": rows}, str(tmp_path),
                               train_sampling_strategy="sequential" if carry_state else "random")
    data = StreamBlocks(tokens, rows, bptt)
    return ULMFiTTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, carry_state=carry_state,
                         data_collator=_stack)


def test_the_trainer_carries_the_state_detached_from_batch_to_batch_and_resets_it(tmp_path):
    tokens = np.random.default_rng(0).integers(1, 50, 2 * 20)  # 2 streams of 20: 4 batches per epoch
    trainer = _tiny_trainer(tmp_path, tokens, carry_state=True)
    calls = []
    trainer.model.register_forward_hook(
        lambda module, args, kwargs, out: calls.append((module.training, kwargs.get("state"), out.state)), with_kwargs=True)
    trainer.train()
    trained = [c for c in calls if c[0]]
    assert len(trained) == 8
    for step, (_, given, _) in enumerate(trained):
        if step % 4 == 0:
            assert given is None  # each epoch starts from zeros
        else:
            previous = trained[step - 1][2]
            for (h, c), (h0, c0) in zip(given, previous):
                assert torch.equal(h, h0) and torch.equal(c, c0)  # the previous batch's final state
                assert not h.requires_grad and not c.requires_grad  # detached: BPTT stops at the batch
    for _ in range(2):  # every evaluation starts from zeros, not where the last one ended, and carries too
        calls.clear()
        trainer.evaluate()
        assert calls[0][1] is None and calls[1][1] is not None


def test_without_carry_state_every_batch_starts_from_zeros(tmp_path):
    trainer = _tiny_trainer(tmp_path, np.random.default_rng(0).integers(1, 50, 40), carry_state=False, epochs=1)
    given = []
    trainer.model.register_forward_hook(lambda module, args, kwargs, out: given.append(kwargs.get("state")),
                                        with_kwargs=True)
    trainer.train()
    assert given == [None] * 4


def test_a_streamed_recipe_reads_the_same_texts_as_an_in_memory_one(tmp_path, tokenizer):
    """data.streaming: the same training and held-out texts (empty ones dropped, max_texts the
    first ones) and so the same token files and blocks, without loading the dataset."""
    import pandas as pd

    from pipelines.config import DataConfig
    from pipelines.data import lm_text_splits

    folder = tmp_path / "corpus"
    folder.mkdir()
    pd.DataFrame({"text": TEXTS * 40}).to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"text": TEXTS[::-1] * 4}).to_csv(folder / "validation.csv", index=False)
    files = {}
    for streaming in (False, True):
        data = DataConfig(path=str(folder), validation_split="validation", max_texts=150, streaming=streaming)
        train, valid = lm_text_splits(data, seed=0)
        assert isinstance(train, IterableDataset) == streaming
        if not streaming:  # in memory, max_texts takes a seeded sample: compare with the first 150 instead
            train = Dataset.from_dict({"text": [t for t in TEXTS * 40 if t][:150]})
        files[streaming] = [token_file(texts, tokenizer, "text", False, tmp_path / str(streaming), split,
                                       identity=f"{split} {streaming}" if streaming else None)
                            for split, texts in (("train", train), ("validation", valid))]
    for in_memory, streamed in zip(files[False], files[True]):
        assert len(in_memory) > 0 and np.array_equal(in_memory, streamed)
