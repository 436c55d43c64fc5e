"""Text embeddings: any trained folder (a language model or classifier of either backbone) or a
checkpoint (e.g. all-MiniLM-L6-v2) turns texts into vectors whose cosine similarity measures how
alike the texts are; `lm-transfer embed` saves them, `lm-transfer search` queries them.

Steps of `embed`: load the model as an encoder (its body, BPT3C, pooling) -> read DATA's split ->
encode its texts in batches with a progress bar -> write OUTPUT/embeddings.parquet (row, text,
label, embedding; a `datasets` Parquet file) and OUTPUT/embed.json (what made them, for search)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import POOLINGS, DataConfig
from .errors import LmTransferError, first_line
from .outputs import check_output_folder, claim, hold_output_locks
from .paths import local_data_paths
from .sentence_encoder import DEFAULT_MAX_LENGTH, read_defaults

EMBEDDINGS_FILE, META_FILE = "embeddings.parquet", "embed.json"


class EmbedError(LmTransferError):
    pass


@dataclass
class Encoder:
    """A model read as a text encoder: `encode(texts)` -> (n, dim) float32 vectors."""

    model: object  # a TransferClassifier: `embed` truncates, reverses a backward model's tokens, pools
    tokenizer: object
    source: str
    kind: str  # classifier | language model (any other body: a checkpoint's encoder)
    max_length: int
    bf16: bool = False
    identity: str | None = None  # model_identity of the folder

    def encode(self, texts: list[str], batch_size: int = 32, progress: bool = True) -> np.ndarray:
        from .features import pooled_features

        return pooled_features(self.model, self.tokenizer, texts, self.max_length, batch_size=batch_size,
                               bf16=self.bf16, progress=progress)

    def save_sentence_transformer(self, folder: Path, normalize: bool = False) -> None:
        """The encoder as a model folder that sentence-transformers (and `AutoModel`) load and that
        makes these same vectors: the body as a TransferEncoder (BPT3C, backward reading, this
        length), its tokenizer and the sentence-transformers files for this pooling."""
        from .backbones import save_tokenizer
        from .models.classifier import TransferClassifierConfig, TransferEncoder, hidden_width
        from .sentence_encoder import write_files

        reads = self.model.config
        body = self.model.backbone
        config = TransferClassifierConfig(backbone=body.config.to_dict(), pooling=reads.pooling,
                                          direction=reads.direction, bptt=reads.bptt, max_tokens=self.max_length)
        TransferEncoder(config, backbone=body).save_pretrained(folder)
        save_tokenizer(self.tokenizer, folder, self.max_length)
        write_files(folder, reads.pooling, self.max_length, hidden_width(body.config), normalize)

    def describe(self) -> dict:
        config = self.model.config
        return {"model": self.source, "model_identity": self.identity, "kind": self.kind, "pooling": config.pooling,
                "max_length": self.max_length, "bptt": config.bptt, "direction": config.direction}


def load_encoder(path: str, pooling: str | None = None, max_length: int | None = None, bptt: int | None = None,
                 bf16: bool = False) -> Encoder:
    """A classifier folder keeps its own pooling and length unless told otherwise (its head was
    trained on them); any other model takes those of its sentence-transformers files (a language
    model lm-transfer trained: mean pooling over what it reads in one pass), else it is mean-pooled,
    as sentence encoders are, reading DEFAULT_MAX_LENGTH tokens."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from .backbones import load_body, load_tokenizer, resolve_checkpoint
    from .models.classifier import TransferClassifier
    from .stages.classify import default_bptt

    if pooling is not None and pooling not in POOLINGS:  # (the classifier's: concat, last, mean)
        raise EmbedError(f"pooling '{pooling}': choose one of {', '.join(POOLINGS)}")
    if (max_length is not None and max_length < 1) or (bptt is not None and bptt < 1):
        raise EmbedError(f"max_length ({max_length}) and bptt ({bptt}) must be at least 1")
    local = resolve_checkpoint(path)
    if Path(local).is_dir() and not (Path(local) / "config.json").is_file():
        raise EmbedError(f"{path}: not a model folder (no config.json); give a stage's output folder "
                         "(e.g. runs/demo-bbc/classifier) or a checkpoint")
    try:  # (a folder without a tokenizer or weights, a Hub id offline: one line, not a traceback)
        config = AutoConfig.from_pretrained(local)
        tokenizer = load_tokenizer(path)
        classifier = any(a in ("TransferClassifier", "AwdLstmForSequenceClassification")
                         for a in config.architectures or [])
        encoder = "TransferEncoder" in (config.architectures or [])  # (an `embed` output: a classifier's body)
        model = AutoModelForSequenceClassification.from_pretrained(local) if classifier else None
        if encoder:
            body = AutoModel.from_pretrained(local)
            model = TransferClassifier(body.config, backbone=body.backbone)
        body = None if classifier or encoder else load_body(path)
    except (OSError, ValueError) as err:
        raise EmbedError(f"{path}: cannot load a model from it ({first_line(err)})") from None
    if classifier or encoder:  # its own settings unless told otherwise: a classifier's head was trained on them
        model.config.pooling = pooling or model.config.pooling
        model.config.max_tokens = max_length = max_length or model.config.max_tokens
        model.config.bptt = bptt or model.config.bptt
    else:
        defaults = read_defaults(local)
        max_length = max_length or defaults.get("max_length", DEFAULT_MAX_LENGTH)
        model = TransferClassifier.from_body(
            body, num_labels=1, pooling=pooling or defaults.get("pooling", "mean"),
            direction=getattr(body.config, "direction", "forward"), bptt=bptt or default_bptt(body, max_length),
            max_tokens=max_length, pad_token_id=tokenizer.pad_token_id)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    lm = any(a.endswith(("ForCausalLM", "ForMaskedLM")) for a in config.architectures or [])
    kind = "classifier" if classifier else "language model" if lm else "encoder"
    # (a folder by its absolute path: `search` finds the model from anywhere)
    source = str(Path(path).resolve()) if Path(path).is_dir() else path
    return Encoder(model, tokenizer, source, kind, max_length, bf16, model_identity(local))


def model_identity(folder: str) -> str | None:
    """What tells whether a model folder still holds the weights vectors were made with: the config
    fingerprint of a stage's folder, else a hash of its weight files' names, sizes and times; None for
    a Hub id (a revision of it is not tracked)."""
    from .record import read_provenance

    if not Path(folder).is_dir():
        return None
    built = read_provenance(Path(folder))
    if built and built.get("config_fingerprint"):
        return built["config_fingerprint"]
    files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in Path(folder).glob("*.safetensors"))
    return hashlib.sha256(repr(files).encode()).hexdigest()[:16]


def embed(model_path: str, data: DataConfig, output: str | Path, split: str | None = None,
          pooling: str | None = None, max_length: int | None = None, bptt: int | None = None, batch_size: int = 32,
          max_examples: int | None = None, seed: int = 0, bf16: bool = False, choose: str = "--split",
          normalize: bool = False) -> dict:
    """Writes OUTPUT's two files; returns embed.json's content. Empty texts are left out; `row` is
    each vector's row in the split, so vectors line up with the data they came from."""
    if batch_size < 1 or (max_examples is not None and max_examples < 1):
        raise EmbedError(f"batch size ({batch_size}) and max examples ({max_examples}) must be at least 1")
    output = Path(output)
    if output.is_file():
        raise EmbedError(f"{output}: is a file; give the folder to write the embeddings in")
    check_output_folder(f"--output {output}", str(output), local_data_paths(data))
    with hold_output_locks([output]):
        return _embed(model_path, data, output, split, pooling, max_length, bptt, batch_size, max_examples, seed, bf16,
                      choose, normalize)


def _embed(model_path, data, output, split, pooling, max_length, bptt, batch_size, max_examples, seed, bf16,
           choose, normalize) -> dict:
    from datasets import Dataset

    from .data import balanced_indices, label_names_of, read_split

    encoder = load_encoder(model_path, pooling, max_length, bptt, bf16)
    read, ds = read_split(data, split, choose)
    texts = list(ds[data.text_column])
    labels = label_names_of(ds, data) if data.label_column and data.label_column in ds.column_names else None
    rows = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    if not rows:
        raise EmbedError(f"{data.path}: every text is empty; nothing to embed")
    if max_examples is not None and len(rows) > max_examples:  # (stratified by label when there are labels)
        rows = [rows[i] for i in balanced_indices([labels[r] for r in rows] if labels else [None] * len(rows),
                                                 max_examples, seed)]
    started = time.time()
    vectors = encoder.encode([texts[i] for i in rows], batch_size=batch_size)
    if normalize:  # (unit length: a dot product is the cosine, as sentence-transformers' normalize_embeddings)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    seconds = time.time() - started
    columns = {"row": rows, "text": [texts[i] for i in rows], "embedding": list(vectors)}
    if labels is not None:
        columns["label"] = [labels[i] for i in rows]
    # Local paths relative to the index folder: it holds no absolute path of this machine, and moves
    # (or is published) with the model beside it.
    meta = {**encoder.describe(), "model": portable_path(encoder.source, output), "normalized": normalize,
            "data": portable_path(data.path, output), "read": read, "texts": len(rows), "dim": int(vectors.shape[1]),
            "seconds": round(seconds, 1), "texts_per_second": round(len(rows) / max(seconds, 1e-9), 1)}
    claim(output)
    temp = output / f".{EMBEDDINGS_FILE}.partial"
    Dataset.from_dict(columns).to_parquet(str(temp))
    temp.replace(output / EMBEDDINGS_FILE)
    encoder.save_sentence_transformer(output, normalize)
    (output / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def portable_path(path: str | None, index: Path) -> str | None:
    """A local file or folder as a path relative to the index folder; anything else (a Hub id) as it is."""
    if path is None or not Path(path).expanduser().exists():
        return path
    return os.path.relpath(Path(path).expanduser().resolve(), Path(index).resolve())


def load_embeddings(folder: str | Path):
    """(dataset with row / text / label / embedding, embed.json's content) of an `embed` output."""
    from datasets import Dataset

    folder = Path(folder)
    if not (folder / EMBEDDINGS_FILE).is_file() or not (folder / META_FILE).is_file():
        raise EmbedError(f"{folder}: no embeddings here ({EMBEDDINGS_FILE} and {META_FILE}); make them with "
                         "`lm-transfer embed MODEL --data DATA --output FOLDER`")
    return Dataset.from_parquet(str(folder / EMBEDDINGS_FILE)), json.loads((folder / META_FILE).read_text())


class SearchIndex:
    """Nearest texts by cosine similarity over an `embed` output, queries encoded by the same model
    with the same settings. The index is scikit-learn's (exact, brute force: fine up to ~10^5 texts)."""

    def __init__(self, folder: str | Path):
        from sklearn.neighbors import NearestNeighbors

        self.data, self.meta = load_embeddings(folder)
        model = Path(folder) / self.meta["model"]  # (relative to the index; older indexes hold absolute paths)
        if not os.path.isabs(self.meta["model"]) and model.exists():
            self.meta = {**self.meta, "model": str(model)}
        self.vectors = np.asarray(self.data["embedding"], dtype=np.float32)
        self.index = NearestNeighbors(metric="cosine", algorithm="brute").fit(self.vectors)
        self._encoder = None

    def encoder(self) -> Encoder:
        if self._encoder is None:
            meta = self.meta
            if not Path(meta["model"]).exists() and meta["model"].startswith((".", "/", "~")):
                raise EmbedError(f"the model these embeddings were made with, {meta['model']}, is not there any more")
            encoder = load_encoder(meta["model"], meta["pooling"], meta["max_length"], meta["bptt"])
            if encoder.identity != meta.get("model_identity"):  # queries and texts must share one model
                raise EmbedError(f"{meta['model']} has changed since these embeddings were made (retrained?): "
                                 "run lm-transfer embed again")
            self._encoder = encoder
        return self._encoder

    def search(self, queries: list[str], k: int = 5) -> list[list[dict]]:
        """For each query, its k nearest texts: {score (cosine similarity), row, text, label}."""
        if k < 1:
            raise EmbedError(f"k={k}: must be at least 1")
        k = min(k, len(self.vectors))
        vectors = self.encoder().encode(queries, progress=False)  # (cosine: unit length or not, the same)
        distances, indices = self.index.kneighbors(vectors, n_neighbors=k)
        labels = self.data["label"] if "label" in self.data.column_names else None
        return [[{"score": 1.0 - float(d), "row": self.data[int(i)]["row"], "text": self.data[int(i)]["text"],
                  "label": labels[int(i)] if labels else None} for d, i in zip(ds, ix)]
                for ds, ix in zip(distances, indices)]
