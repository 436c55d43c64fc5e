"""The embedding-quality evaluate modules on small embeddings with known answers."""

import math

import numpy as np
import pytest

from pipelines.metrics import Clustering, NeighbourRetrieval, OutlierDetection
from pipelines.metrics.embedding_quality import _neighbours

# in memory: evaluate keeps its cache-file lock when a compute raises, and the next instance then
# waits 1 s for it (measured) before taking another file


def retrieval(vectors, labels, k):
    return NeighbourRetrieval().compute(embeddings=np.asarray(vectors, dtype=np.float32).tolist(),
                                        labels=list(labels), k=k)


def clustering(vectors, labels, seed=0):
    return Clustering().compute(embeddings=np.asarray(vectors, dtype=np.float32).tolist(), labels=list(labels),
                                seed=seed)


def outliers(vectors, is_outlier, k):
    return OutlierDetection().compute(embeddings=np.asarray(vectors, dtype=np.float32).tolist(),
                                      is_outlier=list(is_outlier), k=k)


def separated(per_class=10, classes=3, dim=8, seed=0):
    """Tight clusters around orthogonal directions."""
    rng = np.random.default_rng(seed)
    vectors = np.concatenate([np.eye(dim)[c] + 0.01 * rng.standard_normal((per_class, dim)) for c in range(classes)])
    return vectors, np.repeat(np.arange(classes), per_class)


def at_angles(degrees, scales=None):
    radians = np.radians(degrees)
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1)
    return vectors if scales is None else vectors * np.asarray(scales)[:, None]


def test_perfectly_separated_clusters_score_one():
    vectors, labels = separated()
    assert retrieval(vectors, labels, k=5) == {"precision_at_k": 1.0, "mrr": 1.0, "k": 5}
    assert retrieval(vectors, labels, k=9)["precision_at_k"] == 1.0  # all 9 others of the class
    # only 9 other items share a label, so the 10th neighbour is always from another class
    assert retrieval(vectors, labels, k=10)["precision_at_k"] == pytest.approx(0.9)
    result = clustering(vectors, labels)
    assert result["nmi"] == pytest.approx(1.0) and result["ari"] == pytest.approx(1.0) and result["clusters"] == 3


def test_hand_computed_precision_and_mrr():
    # unit vectors at angles a=0, b=10, c=30, d=90, e=100 degrees (cosine distance grows with the angle
    # between them), labels a:0 b:0 c:1 d:1 e:0. Others by angle, with their labels:
    #   a(0): b 10 (0), c 30 (1), d 90 (1), e 100 (0) -> p@1 1, p@2 1/2, first same-label rank 1
    #   b(0): a 10 (0), c 20 (1), d 80 (1), e 90 (0)  -> p@1 1, p@2 1/2, rank 1
    #   c(1): b 20 (0), a 30 (0), d 60 (1), e 70 (0)  -> p@1 0, p@2 0,   rank 3
    #   d(1): e 10 (0), c 60 (1), b 80 (0), a 90 (0)  -> p@1 0, p@2 1/2, rank 2
    #   e(0): d 10 (1), c 70 (1), b 90 (0), a 100 (0) -> p@1 0, p@2 0,   rank 3
    # p@1 = 2/5, p@2 = 1.5/5 = 0.3, MRR = (1 + 1 + 1/3 + 1/2 + 1/3) / 5 = 19/30
    vectors, labels = at_angles([0, 10, 30, 90, 100]), [0, 0, 1, 1, 0]
    one, two = retrieval(vectors, labels, k=1), retrieval(vectors, labels, k=2)
    assert one["precision_at_k"] == pytest.approx(0.4) and two["precision_at_k"] == pytest.approx(0.3)
    assert one["mrr"] == pytest.approx(19 / 30) and two["mrr"] == pytest.approx(19 / 30) and two["k"] == 2


def test_mrr_is_zero_for_a_label_no_other_item_has():
    # a and b (label 0) are each other's nearest; c is alone in label 1: MRR (1 + 1 + 0) / 3
    result = retrieval([[1, 0], [0.9, 0.1], [0, 1]], [0, 0, 1], k=1)
    assert result["mrr"] == pytest.approx(2 / 3) and result["precision_at_k"] == pytest.approx(2 / 3)


def test_scaling_each_vector_changes_nothing():
    vectors, labels = separated(per_class=8, seed=1)
    vectors = vectors + 0.3 * np.random.default_rng(2).standard_normal(vectors.shape)  # overlapping classes
    scaled = vectors * np.random.default_rng(3).uniform(0.05, 50, size=(len(vectors), 1))
    flags = (np.arange(len(vectors)) % 6 == 0).astype(int)
    for k in (1, 3):
        assert retrieval(scaled, labels, k) == pytest.approx(retrieval(vectors, labels, k))
        assert outliers(scaled, flags, k) == pytest.approx(outliers(vectors, flags, k))
    assert clustering(scaled, labels) == pytest.approx(clustering(vectors, labels))


def test_cosine_not_euclidean_neighbours_and_clusters():
    # class 0 along x, class 1 along y, one short and one long vector each: by angle each item's
    # nearest is its own class; by Euclidean distance the two short ones are nearest each other
    vectors, labels = [[1, 0.1], [10, 0], [0.1, 1], [0, 10]], [0, 0, 1, 1]
    assert retrieval(vectors, labels, k=1) == {"precision_at_k": 1.0, "mrr": 1.0, "k": 1}
    # k-means on the raw vectors would split short from long
    assert clustering(vectors, labels)["ari"] == pytest.approx(1.0)


def test_cosine_not_euclidean_outlier_scores():
    # inliers along x at very different lengths; the outlier is at 90 degrees but short, so by
    # Euclidean distance it is closer to the short inliers than the long ones are to each other
    vectors = [[1, 0], [2, 0.1], [5, 0], [10, 0.2], [20, 0], [40, 0.1], [0, 1]]
    assert outliers(vectors, [0, 0, 0, 0, 0, 0, 1], k=2)["auroc"] == 1.0


def test_the_query_is_not_its_own_neighbour():
    # two vectors, each twice with different labels: an item's nearest other item is its copy, with the
    # other label (the query itself would have its own label and give precision 1)
    vectors, labels = [[1, 0], [1, 0], [0, 1], [0, 1]], [0, 1, 0, 1]
    assert retrieval(vectors, labels, k=1)["precision_at_k"] == 0.0
    distances, indices = _neighbours(np.asarray(vectors, dtype=float), 3, "test")
    assert indices.shape == (4, 3) and not (indices == np.arange(4)[:, None]).any()
    assert all(sorted(row) == sorted(set(range(4)) - {i}) for i, row in enumerate(indices.tolist()))
    assert distances[:, 0] == pytest.approx(0.0)


def test_shuffled_labels_on_structureless_data_score_near_zero():
    rng = np.random.default_rng(0)
    vectors, labels = rng.standard_normal((300, 16)), rng.integers(0, 3, size=300)
    result = clustering(vectors, labels)
    assert abs(result["nmi"]) < 0.05 and abs(result["ari"]) < 0.05
    assert retrieval(vectors, labels, k=10)["precision_at_k"] == pytest.approx(1 / 3, abs=0.06)  # chance


def test_outlier_far_in_angle_scores_one_and_inside_the_cluster_does_not():
    vectors, _ = separated(per_class=20, classes=1)
    far = np.concatenate([vectors, -np.eye(8)[:1]])
    assert outliers(far, [0] * 20 + [1], k=5) == {"auroc": 1.0, "k": 5}
    # the "outlier" is the cluster's own centre: the least outlying item of all
    inside = np.concatenate([vectors, np.eye(8)[:1]])
    assert outliers(inside, [0] * 20 + [1], k=5)["auroc"] < 0.5


def test_outlier_score_uses_exactly_k_neighbours():
    # inliers at 0, 2, 4, 6, 8 degrees; two outliers at 90 and 91 degrees, each other's nearest item.
    # k=1: an outlier's score is the 1-degree gap to its twin, below every inlier's (2 degrees): AUROC 0.
    # k=2: the second neighbour is an inlier 82+ degrees away: AUROC 1.
    vectors, flags = at_angles([0, 2, 4, 6, 8, 90, 91]), [0, 0, 0, 0, 0, 1, 1]
    assert outliers(vectors, flags, k=1)["auroc"] == 0.0 and outliers(vectors, flags, k=2)["auroc"] == 1.0
    distances, indices = _neighbours(vectors, 1, "test")
    assert indices.shape == (7, 1) and indices[[0, 4, 5, 6], 0].tolist() == [1, 3, 6, 5]  # the rest tie
    assert distances[5, 0] == pytest.approx(1 - math.cos(math.radians(1)))


def test_zero_vectors_give_finite_scores():
    vectors = [[1, 0], [1, 0.1], [0, 1], [0.1, 1], [0, 0], [0, 0]]
    distances, _ = _neighbours(np.asarray(vectors, dtype=float), 4, "test")
    assert np.isfinite(distances).all() and distances[4] == pytest.approx(1.0)  # zero vector: distance 1
    results = [retrieval(vectors, [0, 0, 1, 1, 1, 0], k=2), clustering(vectors, [0, 0, 1, 1, 1, 0]),
               outliers(vectors, [0, 0, 0, 0, 1, 1], k=2)]
    assert all(math.isfinite(v) for result in results for v in result.values())


@pytest.mark.parametrize("call, message", [
    (lambda: retrieval([[1, 0], [0, 1], [1, 1]], [0, 1, 0], k=3), "k must be between 1 and n - 1 = 2"),
    (lambda: retrieval([[1, 0], [0, 1], [1, 1]], [0, 1, 0], k=0), "k must be between"),
    (lambda: retrieval([[1, 0]], [0], k=1), "at least 2 embeddings"),
    (lambda: NeighbourRetrieval().compute(embeddings=[[1, 0], [0, 1, 1]], labels=[0, 1], k=1), "same size"),
    (lambda: outliers([[1, 0], [0, 1], [1, 1]], [0, 1, 0], k=3), "k must be between"),
    (lambda: outliers([[1, 0], [0, 1], [1, 1]], [0, 0, 0], k=1), "only inliers"),
    (lambda: outliers([[1, 0], [0, 1], [1, 1]], [1, 1, 1], k=1), "only outliers"),
    (lambda: outliers([[1, 0], [0, 1], [1, 1]], [0, 2, 0], k=1), "must be 0 or 1"),
    (lambda: clustering([[1, 0], [0, 1], [1, 1]], [4, 4, 4]), "distinct labels"),
])
def test_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
