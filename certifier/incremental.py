"""Incremental certification of a changed model from the original's samples (docs/methods.md section 10).

After Ugare, Banerjee, Misailovic and Singh, "Incremental Randomized
Smoothing Certification", ICLR 2024 (arXiv 2305.19521). A base store holds a
model f on n0 + n noisy copies of each input; a replay store holds a changed
model f' (quantized, pruned, fine-tuned) on **the same noisy copies**: the n0
selection copies and the first P estimation copies. The certificate for f''s
smoothed classifier is

    cA   = top-1 of the base's selection counts (ties towards the lowest index)
    pA   = CP_lower(base counts[cA] over all n estimation rows, n, a)
    d    = #{j < P : f(x + e_j) != f'(x + e_j)}                 (paired disagreements, reported)
    lost = #{j < P : f(x + e_j) = cA and f'(x + e_j) != cA}     (cA votes the change lost)
    zeta = CP_upper(lost, P, a)
    p    = pA - zeta;  abstain if p < 0.5, else radius = sigma * Phi^-1(p)

Why it holds: splitting the event {f = cA} by what f' says,
``P(f' = cA) = P(f = cA) - P(f = cA, f' != cA) + P(f != cA, f' = cA) >=
P(f = cA) - P(f = cA, f' != cA)`` (all at x + e, e ~ N(0, sigma^2 I)), and
lost / P is the proportion of P paired copies on which the event
{f = cA, f' != cA} happened, so zeta bounds its probability. With
probability >= 1 - a the first term is >= pA and, with probability >= 1 - a,
the second is <= zeta; by the union bound both hold with probability
>= 1 - 2a, whatever the dependence between them (the replay rows share the
base's noise, so they are far from independent), and then
``P(f'(x+e) = cA) >= pA - zeta``. Cohen et al.'s theorem turns that into
the radius. ``a = alpha`` gives overall confidence 1 - 2 alpha; under
``--joint-alpha`` ``a = alpha / 2`` and the overall confidence is 1 - alpha.

Ugare et al. bound every disagreement, zeta = CP_upper(d, P, a); lost <= d
row by row and CP_upper is increasing in its count, so counting only the cA
votes lost is never looser (docs/methods.md section 10 pins this reading).

The predicted class is the base's cA, chosen on the base's selection block
only, never a class read from the replay store's estimation rows. (The
paper's reference code picks the class on the replayed rows and skips inputs
whose base prediction is wrong; neither is done here.)

Pure functions over arrays, vectorised over inputs.
"""
from __future__ import annotations

import numpy as np

from ..stats.bounds import cp_lower, cp_upper
from ..stats.counts import top_k
from ..stats.normal import norm_ppf


def _paired(base_labels, replay_labels) -> tuple[np.ndarray, np.ndarray]:
    base_labels = np.asarray(base_labels)
    replay_labels = np.asarray(replay_labels)
    if base_labels.ndim != 2 or base_labels.shape != replay_labels.shape:
        raise ValueError(f"paired hard labels must be two (B, P) arrays of one shape, got {base_labels.shape} "
                         f"and {replay_labels.shape}")
    return base_labels, replay_labels


def count_disagreements(base_labels, replay_labels) -> np.ndarray:
    """(B,) int64: how many paired rows have different hard labels, ``#{j : base[b, j] != replay[b, j]}``.

    ``base_labels`` and ``replay_labels`` are (B, P) hard labels of the same
    noisy copies under the two models, row j of one paired with row j of the
    other. This is the d of docs/methods.md section 10 (reported, not used
    by the bound).
    """
    base_labels, replay_labels = _paired(base_labels, replay_labels)
    return np.count_nonzero(base_labels != replay_labels, axis=1).astype(np.int64)


def count_lost(base_labels, replay_labels, cA) -> np.ndarray:
    """(B,) int64: paired rows where the base says cA and the replay does not, ``#{j : base[b, j] = cA[b] != replay[b, j]}``.

    The ``lost`` of docs/methods.md section 10: the cA votes the change took
    away, each row j of ``base_labels`` (B, P) paired with row j of
    ``replay_labels``; ``cA`` (B,) is the base's predicted class
    (``predicted_class``). Never larger than the disagreements d.
    """
    base_labels, replay_labels = _paired(base_labels, replay_labels)
    cA = np.asarray(cA, dtype=np.int64).reshape(-1, 1)
    if cA.shape[0] != base_labels.shape[0]:
        raise ValueError(f"cA must hold one class per input ({base_labels.shape[0]}), got {cA.shape[0]}")
    return np.count_nonzero((base_labels == cA) & (replay_labels != cA), axis=1).astype(np.int64)


def predicted_class(counts0) -> np.ndarray:
    """(B,) int64: cA, the top-1 of the base's selection counts ``counts0`` (B, m), ties towards the lowest index."""
    return top_k(np.asarray(counts0), 1)[0][:, 0].astype(np.int64)


def certify(counts0, base_counts, n, lost, P, sigma: float, alpha: float):
    """The incremental certificate of f' for each input (docs/methods.md section 10).

    ``counts0`` (B, m): the base's selection counts; ``base_counts`` (B, m):
    the base's estimation counts over all ``n`` rows; ``lost`` (B,): over
    the first ``P`` paired estimation rows, how many the base labels cA =
    ``predicted_class(counts0)`` and the changed model does not
    (``count_lost``); ``alpha``: the level ``a`` of each of the two bounds
    (alpha, or alpha/2 under --joint-alpha). ``n`` and ``P`` are ints or
    (B,) arrays.

    Guarantee: with probability >= 1 - 2 alpha, for every returned class
    ``predict >= 0`` the changed model's smoothed classifier g' satisfies
    g'(x + delta) = predict for all ||delta||_2 < radius, because
    ``P(f'(x+e) = cA) >= P(f = cA) - P(f = cA, f' != cA) >= pA - zeta``
    (union bound, no independence needed). p == 0.5 gives radius 0 (not an
    abstention); p < 0.5 abstains (predict -1, radius 0). A ``lost``
    outside 0..min(P, base_counts[cA]) cannot have been counted against cA
    and is refused (ValueError).

    Returns ``(predict, radius, p_lower, zeta)``: p_lower is pA, the base's
    Clopper-Pearson lower bound; zeta the Clopper-Pearson upper bound on the
    rate of lost cA votes.
    """
    counts0 = np.asarray(counts0)
    base_counts = np.asarray(base_counts)
    if counts0.ndim != 2 or counts0.shape != base_counts.shape:
        raise ValueError(f"counts0 and base_counts must be two (B, m) arrays of one shape, got {counts0.shape} "
                         f"and {base_counts.shape}")
    B = counts0.shape[0]
    lost = np.broadcast_to(np.asarray(lost, dtype=np.int64), (B,))
    P = np.broadcast_to(np.asarray(P, dtype=np.int64), (B,))
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), (B,))
    cA = predicted_class(counts0)
    kA = np.take_along_axis(base_counts, cA[:, None], axis=1)[:, 0]
    if (P < 1).any() or (lost < 0).any() or (lost > np.minimum(P, kA)).any():
        raise ValueError("lost cA votes must lie in 0..min(P, the base's count of cA) with P >= 1")
    pA = np.atleast_1d(cp_lower(kA, n, alpha)).astype(np.float64)
    zeta = np.atleast_1d(cp_upper(lost, P, alpha)).astype(np.float64)
    predict, radius = decide(cA, pA - zeta, sigma)
    return predict, radius, pA, zeta


def decide(cA, p, sigma: float):
    """(predict, radius) from a lower bound ``p`` on P(f'(x+e) = cA): abstain (-1, 0) if p < 0.5, else (cA, sigma Phi^-1(p)).

    p == 0.5 gives radius 0 with the class (not an abstention), as in Cohen et al.'s CERTIFY.
    """
    cA = np.asarray(cA)
    p = np.asarray(p, dtype=np.float64)
    ok = p >= 0.5
    radius = np.where(ok, sigma * norm_ppf(np.where(ok, p, 0.5)), 0.0)
    predict = np.where(ok, cA, -1)
    return predict.astype(np.int64), radius.astype(np.float64)
