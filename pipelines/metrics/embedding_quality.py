"""How well text embeddings serve three uses, scored against labels, as `evaluate` modules.

- `NeighbourRetrieval`: similarity search. Each item queries the others, ranked by cosine similarity;
  precision@k (share of the k nearest with the query's label) and MRR (1 / rank of the first
  same-label item, 0 when no other item has that label), averaged over queries.
- `Clustering`: k-means (k = number of distinct labels) on L2-normalised embeddings, so clusters
  follow cosine geometry like the other two; NMI and ARI against the labels.
- `OutlierDetection`: an item's score is its mean cosine distance to its k nearest other items;
  AUROC of that score against `is_outlier`.

The neighbour metrics rank all n - 1 other items for every query (brute force, exact MRR): O(n^2)
time and memory, so callers subsample, e.g. a few thousand texts. Items at equal distance from a
query are ranked in the order scikit-learn returns them.

    NeighbourRetrieval().compute(embeddings=vectors, labels=labels, k=10)
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import normalize


class _EmbeddingMetric(evaluate.Metric):
    """Kept in memory by default: the inputs are whole embedding matrices, used in-process, and an
    on-disk cache keeps its lock after a failed compute (the next instance then waits 1 s)."""

    def __init__(self, keep_in_memory: bool = True, **kwargs):
        super().__init__(keep_in_memory=keep_in_memory, **kwargs)


def _info(description: str, target: str, target_description: str) -> evaluate.MetricInfo:
    features = datasets.Features({"embeddings": datasets.Sequence(datasets.Value("float32")),
                                  target: datasets.Value("int64")})
    return evaluate.MetricInfo(description=description, citation="", features=features,
                               inputs_description=f"embeddings: one vector per item; {target}: {target_description}")


def _matrix(embeddings, name: str) -> np.ndarray:
    try:
        vectors = np.asarray(embeddings, dtype=np.float64)
    except ValueError:  # numpy's own message for ragged rows does not say what is wrong
        raise ValueError(f"{name}: embeddings must all have the same size") from None
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"{name}: needs at least 2 embeddings, got shape {vectors.shape}")
    return vectors


def _check_k(k: int, n: int, name: str) -> None:
    if not 1 <= k < n:
        raise ValueError(f"{name}: k must be between 1 and n - 1 = {n - 1} (the other items), got k={k}")


def _neighbours(vectors: np.ndarray, k: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices), shape (n, k): each item's k nearest other items by cosine distance,
    nearest first. Zero vectors: cosine is undefined, and sklearn normalises them to zero, so they
    sit at distance 1 from everything (no NaN)."""
    n = len(vectors)
    _check_k(k, n, name)
    distances, indices = NearestNeighbors(metric="cosine", algorithm="brute").fit(vectors).kneighbors(
        vectors, n_neighbors=n)
    # every row holds all n items, the query once; drop it by index, not as column 0: a duplicate of
    # the query ties with it at distance 0 and may come back first
    others = indices != np.arange(n)[:, None]
    return distances[others].reshape(n, n - 1)[:, :k], indices[others].reshape(n, n - 1)[:, :k]


class NeighbourRetrieval(_EmbeddingMetric):
    """Precision@k and MRR of cosine nearest-neighbour search, each item querying the others."""

    def _info(self):
        return _info("Precision@k and mean reciprocal rank of same-label items among cosine nearest neighbours.",
                     "labels", "class id per item; k: neighbours for precision (default 10)")

    def _compute(self, embeddings, labels, k: int = 10):
        vectors = _matrix(embeddings, "neighbour_retrieval")
        _check_k(k, len(vectors), "neighbour_retrieval")
        _, order = _neighbours(vectors, len(vectors) - 1, "neighbour_retrieval")  # full ranking: exact MRR
        labels = np.asarray(labels)
        same = labels[order] == labels[:, None]
        reciprocal = np.where(same.any(axis=1), 1.0 / (same.argmax(axis=1) + 1), 0.0)
        return {"precision_at_k": float(same[:, :k].mean()), "mrr": float(reciprocal.mean()), "k": k}


class Clustering(_EmbeddingMetric):
    """NMI and ARI of k-means clusters (k = distinct labels) on L2-normalised embeddings."""

    def _info(self):
        return _info("NMI and ARI of k-means clusters of L2-normalised embeddings against the labels.",
                     "labels", "class id per item; seed: k-means random state (default 0)")

    def _compute(self, embeddings, labels, seed: int = 0):
        vectors = _matrix(embeddings, "clustering")
        clusters = len(set(labels))
        if not 2 <= clusters <= len(vectors):
            raise ValueError(f"clustering: needs 2 to n = {len(vectors)} distinct labels, got {clusters}")
        # unit length, so k-means' Euclidean distances order pairs as cosine does (zero rows stay zero)
        assigned = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(normalize(vectors))
        return {"nmi": float(normalized_mutual_info_score(labels, assigned)),
                "ari": float(adjusted_rand_score(labels, assigned)), "clusters": clusters}


class OutlierDetection(_EmbeddingMetric):
    """AUROC of the mean cosine distance to the k nearest other items as an outlier score."""

    def _info(self):
        return _info("AUROC of mean cosine distance to the k nearest neighbours as an outlier score.",
                     "is_outlier", "1 for an outlier, 0 otherwise; k: neighbours per score (default 10)")

    def _compute(self, embeddings, is_outlier, k: int = 10):
        vectors = _matrix(embeddings, "outlier_detection")
        truth = np.asarray(is_outlier)
        if not set(truth.tolist()) <= {0, 1}:
            raise ValueError(f"outlier_detection: is_outlier must be 0 or 1, got {sorted(set(truth.tolist()))}")
        if truth.min() == truth.max():
            raise ValueError("outlier_detection: AUROC needs both outliers and inliers, got only "
                             + ("outliers" if truth[0] else "inliers"))
        distances, _ = _neighbours(vectors, k, "outlier_detection")
        return {"auroc": float(roc_auc_score(truth, distances.mean(axis=1))), "k": k}
