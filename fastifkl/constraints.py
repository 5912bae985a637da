"""Cross-domain constraints for kernel learning and their distance thresholds (paper Section 4).

Points are sampled per domain (training noise condition), class-balanced where possible, and
every pair of points from two different domains becomes a constraint: *similar* when the two
units have the same IBM label, *dissimilar* otherwise (paper Eq. 3).  The thresholds u / l are
percentiles of the constrained pairs' squared distances under the base kernel.  The solver that
learns a kernel from them is :func:`fastifkl.itml.learn_kernel`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["cross_domain_constraints", "distance_thresholds", "check_constraints", "pair_distances"]


def _balanced_take(labels: np.ndarray, members: np.ndarray, k: int, gen: np.random.Generator) -> np.ndarray:
    """Pick ``k`` of ``members`` as evenly over the classes as their sizes allow."""
    classes = np.unique(labels[members])
    pools = [gen.permutation(members[labels[members] == c]) for c in classes]
    quota = np.zeros(len(pools), dtype=np.int64)
    left = min(k, len(members))
    while left > 0:  # water-filling: give one more to every class that still has points
        open_ = [c for c in range(len(pools)) if quota[c] < len(pools[c])]
        share = max(left // len(open_), 1)
        for c in open_:
            add = min(share, len(pools[c]) - quota[c], left)
            quota[c] += add
            left -= add
            if left == 0:
                break
    return np.sort(np.concatenate([p[:q] for p, q in zip(pools, quota)]))


def cross_domain_constraints(labels: Any, domains: Any, per_domain: int = 100,
                             rng: np.random.Generator | int | None = None
                             ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Sample points per domain and emit every cross-domain pair as a constraint (paper Eq. 3).

    Parameters
    ----------
    labels : array, shape (N,)
        Class of every candidate point (the IBM label of the T-F unit).
    domains : array, shape (N,)
        Domain (noise condition) of every candidate point.
    per_domain : int
        Points sampled from each domain, class-balanced where possible (all of a domain's
        points when it has fewer).
    rng : Generator or seed, optional

    Returns
    -------
    points : ndarray of int, shape (n,)
        Indices (into ``labels``) of the sampled points, grouped by domain; K0 is built on them.
    constraints : tuple (i, j, similar)
        ``i``, ``j`` int arrays indexing ``points`` (so 0 <= i, j < n), ``similar`` bool array,
        one entry per pair of sampled points from two different domains
        (``per_domain^2 * C(D, 2)`` pairs for D full domains).
    """
    labels = np.asarray(labels)
    domains = np.asarray(domains)
    if labels.ndim != 1 or domains.ndim != 1 or labels.shape != domains.shape:
        raise InputError(f"labels and domains must be 1-D arrays of one length, got {labels.shape} and {domains.shape}")
    per_domain = int(per_domain)
    if per_domain < 1:
        raise InputError(f"per_domain must be >= 1, got {per_domain}")
    gen = np.random.default_rng(rng)
    doms = np.unique(domains)
    if len(doms) < 2:
        raise InputError(f"cross-domain constraints need at least 2 domains, got {len(doms)}")
    picked = []
    for d in doms:
        members = np.flatnonzero(domains == d)
        if len(np.unique(labels[members])) < 2:
            raise InputError(f"domain {d!r} has a single class ({labels[members][0]!r}); "
                             "cross-domain constraints need both classes in every domain")
        picked.append(_balanced_take(labels, members, per_domain, gen))
    points = np.concatenate(picked)
    dom_of = np.concatenate([np.full(len(p), a) for a, p in enumerate(picked)])
    starts = np.concatenate([[0], np.cumsum([len(p) for p in picked])])
    lab = labels[points]
    ii, jj = [], []
    for a in range(len(picked)):
        for b in range(a + 1, len(picked)):
            ia = np.arange(starts[a], starts[a + 1])
            ib = np.arange(starts[b], starts[b + 1])
            ii.append(np.repeat(ia, len(ib)))
            jj.append(np.tile(ib, len(ia)))
    i = np.concatenate(ii).astype(np.int64)
    j = np.concatenate(jj).astype(np.int64)
    assert np.all(dom_of[i] != dom_of[j])
    return points, (i, j, lab[i] == lab[j])


def check_constraints(constraints: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``(i, j, similar)`` constraints on ``n`` points; returns them as int64, int64 and
    bool arrays, or raises a one-line :class:`InputError`."""
    try:
        i, j, similar = constraints
    except (TypeError, ValueError):
        raise InputError("constraints must be a tuple (i, j, similar) of three 1-D arrays") from None
    i = np.asarray(i)
    j = np.asarray(j)
    similar = np.asarray(similar)
    if not (i.ndim == j.ndim == similar.ndim == 1 and len(i) == len(j) == len(similar)):
        raise InputError("constraints (i, j, similar) must be 1-D arrays of one length")
    if len(i) == 0:
        raise InputError("no constraints given")
    if not (np.issubdtype(i.dtype, np.integer) and np.issubdtype(j.dtype, np.integer)):
        raise InputError("constraint indices i, j must be integers")
    if i.min() < 0 or j.min() < 0 or i.max() >= n or j.max() >= n:
        raise InputError(f"constraint indices must lie in [0, {n})")
    if np.any(i == j):
        raise InputError("a constraint pairs a point with itself (i == j)")
    return i.astype(np.int64), j.astype(np.int64), similar.astype(bool)


def pair_distances(K0: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Squared kernel distances ``K0_ii + K0_jj - 2 K0_ij`` of the pairs ``(i[t], j[t])``: (m,)."""
    d = np.diagonal(K0)
    return d[i] + d[j] - 2.0 * K0[i, j]


def distance_thresholds(K0: Any, constraints: Any, lower_pct: float = 5.0,
                        upper_pct: float = 95.0) -> tuple[float, float]:
    """Distance thresholds u, l: percentiles of the constrained pairs' squared kernel distances.

    d(i, j) = K0_ii + K0_jj - 2 K0_ij over all constraints (similar and dissimilar).

    Returns
    -------
    (u, l) : the ``lower_pct`` and ``upper_pct`` percentiles.
    """
    K0 = np.asarray(K0, dtype=np.float64)
    if K0.ndim != 2 or K0.shape[0] != K0.shape[1]:
        raise InputError(f"K0 must be a square matrix, got shape {K0.shape}")
    if not 0 <= lower_pct < upper_pct <= 100:
        raise InputError(f"need 0 <= lower_pct < upper_pct <= 100, got {lower_pct}, {upper_pct}")
    i, j, _ = check_constraints(constraints, K0.shape[0])
    d = pair_distances(K0, i, j)
    u, l = np.percentile(d, [lower_pct, upper_pct])
    if not u > 0:
        raise InputError(f"the {lower_pct}th percentile of the constrained distances is {u:.3g} "
                         "(duplicate points?); thresholds must be positive")
    return float(u), float(l)
