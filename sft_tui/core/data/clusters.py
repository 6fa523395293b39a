"""Embed examples and group them: TF-IDF + SVD by default, k-means on top.

TF-IDF over words and word pairs, reduced to at most 128 dimensions with truncated SVD
(latent semantic analysis) and L2-normalised, runs on two CPU cores in seconds for
100,000 examples. Model embeddings (mean-pooled hidden states of a local model) come
from sft_tui.trainer.embed and are passed in as a matrix; clustering does not care.
All randomness takes the caller's seed, so the same seed gives the same clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

SVD_DIMENSIONS = 128
MAX_FEATURES = 100_000


@dataclass(frozen=True)
class Clustering:
    """A cluster label per example and the size of each cluster."""

    labels: tuple[int, ...]
    sizes: tuple[int, ...]
    method: str


def tfidf_embeddings(texts: list[str], seed: int = 0):
    """An (n, d) float32 matrix of L2-normalised LSA vectors."""
    import numpy as np
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vectoriser = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2 if len(texts) > 50 else 1,
                                 max_features=MAX_FEATURES, dtype=np.float32)
    try:
        matrix = vectoriser.fit_transform(texts)
    except ValueError:  # every text empty or made only of stop characters
        return np.zeros((len(texts), 1), dtype=np.float32)
    dimensions = min(SVD_DIMENSIONS, matrix.shape[1] - 1, len(texts) - 1)
    if dimensions < 2:
        return normalize(matrix.toarray()).astype(np.float32)
    reduced = TruncatedSVD(n_components=dimensions, random_state=seed).fit_transform(matrix)
    return normalize(reduced).astype(np.float32)


def cluster(vectors, clusters: int, seed: int = 0, method: str = "tfidf") -> Clustering:
    """k-means (mini-batch for speed) into at most `clusters` groups; fewer when there are fewer examples."""
    import numpy as np
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = vectors.shape[0]
    k = max(1, min(clusters, n))
    if k == 1:
        labels = np.zeros(n, dtype=int)
    elif n <= 20_000:
        labels = KMeans(n_clusters=k, random_state=seed, n_init=3).fit_predict(vectors)
    else:
        labels = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096).fit_predict(vectors)
    sizes = np.bincount(labels, minlength=k)
    # Renumber by size so cluster 0 is the largest and empty clusters (possible in k-means) disappear.
    order = [int(c) for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0]
    renumber = {old: new for new, old in enumerate(order)}
    return Clustering(tuple(renumber[int(c)] for c in labels), tuple(int(sizes[c]) for c in order), method)


def proportional_quotas(sizes: tuple[int, ...], total: int) -> list[int]:
    """How many to take from each cluster: proportional to size, at least one each when `total` allows.

    Largest-remainder rounding, so the quotas add up to exactly `total` (capped by the sizes).
    """
    total = min(total, sum(sizes))
    if total < len(sizes):  # fewer slots than clusters: one each from the largest (clusters are numbered by size)
        return [1 if c < total else 0 for c in range(len(sizes))]
    quotas = [1] * len(sizes)
    left = total - len(sizes)
    spare = [size - 1 for size in sizes]
    if left > 0:
        shares = [left * s / sum(spare) for s in spare]
        quotas = [q + int(share) for q, share in zip(quotas, shares, strict=True)]
        left = total - sum(quotas)
        by_remainder = sorted(range(len(sizes)), key=lambda c: (-(shares[c] - int(shares[c])), c))
        while left > 0:
            for c in by_remainder:
                if left and quotas[c] < sizes[c]:
                    quotas[c] += 1
                    left -= 1
    return quotas
