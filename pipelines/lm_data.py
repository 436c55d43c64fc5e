"""Language-model training data: a corpus tokenized once into a flat file of token ids, and the
blocks a language model trains on, read from that file without holding the corpus in memory.

- `token_file`: tokenizes a text split (batched, multi-process, cached by `datasets`) and writes
  its ids end to end, each document followed by EOS, to a memory-mapped file cached beside the
  dataset. An iterable (streamed) dataset writes the same file from its texts as they arrive.
- `ShuffledBlocks`: independent block_size pieces of the stream, which Trainer shuffles
  (transformers: each block is a whole context).
- `StreamBlocks`: truncated back-propagation through time for recurrent LMs. The stream is cut
  into `rows` contiguous streams; item t * rows + r is stream r's t-th piece. Read in order in
  batches of rows / processes, row i of a process's batch t + 1 continues row i of its batch t
  (accelerate hands process p global batches p, p + P, ...), so the hidden state carried from
  batch to batch has read everything before.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset, IterableDataset

from .errors import DataError

# Batches of documents per tokenizer call: large enough to keep the Rust tokenizer busy, small
# enough that one batch's ids are a few MB.
TOKENIZE_BATCH = 1000


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def tokenize_function(tokenizer, column: str, masked: bool, backward: bool = False):
    """Documents -> ids; causal LMs get EOS after each document so the model sees where one ends.
    `backward`: each document's tokens in reverse order (then EOS), for a backward LM."""
    eos = [] if masked or tokenizer.eos_token_id is None else [tokenizer.eos_token_id]

    def tokenize(batch):
        ids = tokenizer(batch[column], add_special_tokens=masked)["input_ids"]
        return {"input_ids": [(seq[::-1] if backward else seq) + eos for seq in ids]}

    return tokenize


def default_processes(texts) -> int:
    """One tokenizing process per core for corpora worth the start-up (the tokenizer already uses
    threads within a batch), one otherwise."""
    many = isinstance(texts, Dataset) and len(texts) >= 50 * TOKENIZE_BATCH
    return max(1, os.cpu_count() or 1) if many else 1


def token_file(texts: Dataset | IterableDataset, tokenizer, column: str, masked: bool, cache_dir: str | os.PathLike,
               split: str, processes: int | None = None, identity: str | None = None,
               backward: bool = False) -> np.memmap:
    """The split's token ids end to end, memory-mapped from `<cache_dir>/<split>-<hash>.<dtype>.bin`,
    written once per (texts, tokenizer) and reused after that. A Dataset is known by its `datasets`
    fingerprint; a stream has none, so its caller names it (`identity`: where it comes from)."""
    streamed = isinstance(texts, IterableDataset)
    if streamed and identity is None:
        raise ValueError("a streamed text needs an identity for its token file")
    tokenize = tokenize_function(tokenizer, column, masked, backward)
    dtype = token_dtype(len(tokenizer))
    source = identity if identity is not None else _identity(texts)
    key = hashlib.sha256(repr((source, _identity(tokenizer), masked, column, backward)).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{split}-{key}.{dtype.name}.bin"
    if not path.exists():
        # A Dataset's map is cached by `datasets` and may use several processes; a stream's runs as it is read.
        processes = 1 if streamed else processes or default_processes(texts)
        parallel = {} if streamed else {"num_proc": processes if processes > 1 else None, "desc": f"tokenizing {split}"}
        tokens = texts.map(tokenize, batched=True, batch_size=TOKENIZE_BATCH, remove_columns=texts.column_names or [column],
                           **parallel)
        _write((pc.list_flatten(batch["input_ids"]).to_numpy()
                for batch in tokens.with_format("arrow").iter(batch_size=10 * TOKENIZE_BATCH)), path, dtype)
    if path.stat().st_size == 0:
        raise DataError(f"{split}: the texts gave no tokens")
    return np.memmap(path, dtype=dtype, mode="r")


def _identity(obj) -> str:
    # datasets' fingerprint of a Dataset (its data and every transform), or of any picklable object.
    from datasets.fingerprint import Hasher

    return obj._fingerprint if isinstance(obj, Dataset) else Hasher.hash(obj)


def _write(pieces: Iterable[np.ndarray], path: Path, dtype: np.dtype) -> None:
    """Appends each piece to a temporary file, renamed into place at the end: a crash or a
    concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as out:
        for piece in pieces:
            if piece.size and int(piece.max()) >= np.iinfo(dtype).max + 1:
                raise DataError(f"token id {int(piece.max())} does not fit {dtype.name}")
            out.write(piece.astype(dtype, copy=False).tobytes())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out.name, 0o666 & ~umask)  # readable as any other cache file, not the temporary file's 0600
    os.replace(out.name, path)


class ShuffledBlocks(torch.utils.data.Dataset):
    """Independent pieces of `block_size` tokens (the remainder is dropped); a corpus shorter
    than one block gives one shorter block."""

    def __init__(self, tokens: np.ndarray, block_size: int):
        self.tokens, self.block_size = tokens, block_size
        self.count = len(tokens) // block_size or (1 if len(tokens) >= 2 else 0)
        if self.count == 0:
            raise DataError("the language-model text has fewer than 2 tokens")

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        start = index * self.block_size
        return {"input_ids": torch.from_numpy(self.tokens[start:start + self.block_size].astype(np.int64))}


class StreamBlocks(torch.utils.data.Dataset):
    """The token stream as `rows` parallel streams read `bptt` tokens at a time (truncated BPTT).
    Each stream holds len(tokens) // rows tokens (the last few tokens of the corpus are dropped);
    the last piece of each stream is shorter when bptt does not divide it, the same length in every
    row, so the last batch needs no padding."""

    def __init__(self, tokens: np.ndarray, rows: int, bptt: int):
        self.tokens, self.rows, self.bptt = tokens, rows, bptt
        self.stream_length = len(tokens) // rows
        if self.stream_length < 2:
            raise DataError(f"{len(tokens):,} tokens cannot fill {rows} streams of 2 or more tokens "
                            "(use a smaller batch size, or more text)")
        full, tail = divmod(self.stream_length, bptt)
        self.pieces = full + (1 if tail >= 2 else 0)  # a 1-token piece has nothing to predict

    def __len__(self) -> int:
        return self.pieces * self.rows

    def position(self, index: int) -> tuple[int, int]:
        """(stream, piece) of an item."""
        piece, stream = divmod(index, self.rows)
        return stream, piece

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        stream, piece = self.position(index)
        start = stream * self.stream_length + piece * self.bptt
        stop = stream * self.stream_length + min((piece + 1) * self.bptt, self.stream_length)
        return {"input_ids": torch.from_numpy(self.tokens[start:stop].astype(np.int64))}
