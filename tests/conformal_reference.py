"""An independent reference of robust conformal sets (docs/methods.md section 12), in plain numpy/scipy.

Written from the definitions, not from ``certifier.conformal`` (and with the
standard library's normal distribution, not scipy's): scores per
row, means and unbiased variances, the CDF-aware calibration score as a sum
over the distinct score values, the calibration quantile, and each test
class's membership, one input at a time. Compact stores: the lower values
(0 outside a row's top K) for calibration, the upper values (the row's K-th
value there) for the test side.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

EDGE = 1e-9  # memberships this close to their boundary are left out of comparisons
_PHI = NormalDist()  # the standard library's normal (Wichura's AS241 quantile), not scipy's


def ppf(q):
    """Phi^-1 with Phi^-1(0) = -inf and Phi^-1(1) = +inf."""
    return -math.inf if q <= 0 else math.inf if q >= 1 else _PHI.inv_cdf(q)


def cdf(x):
    return 0.0 if x == -math.inf else 1.0 if x == math.inf else _PHI.cdf(x)


def scores(rows, score="hps", u=0.0):
    """(N, m) conformity scores of every class on every row (float64), clipped to [0, 1]."""
    p = np.asarray(rows, dtype=np.float64)
    if score == "hps":
        return np.clip(p, 0.0, 1.0)
    out = np.empty_like(p)
    m = p.shape[1]
    for j in range(p.shape[0]):
        order = sorted(range(m), key=lambda c: (-p[j, c], c))   # descending, ties: lower class first
        before = 0.0
        for c in order:
            out[j, c] = 1.0 - (before + u * p[j, c])
            before += p[j, c]
    return np.clip(out, 0.0, 1.0)


def compact_values(topk_p, topk_c, m):
    """(lower, upper) (N, m) values of a compact input's rows: exact in the top K, else 0 / the K-th value."""
    topk_p = np.asarray(topk_p, np.float64)
    N, K = topk_p.shape
    lower = np.zeros((N, m))
    upper = np.repeat(topk_p[:, K - 1:K], m, axis=1)
    for j in range(N):
        for k in range(K):
            lower[j, topk_c[j, k]] = topk_p[j, k]
            upper[j, topk_c[j, k]] = topk_p[j, k]
    return np.clip(lower, 0, 1), np.clip(upper, 0, 1)


def cas_score(c, eps, sigma, alpha):
    """L(x, y, eps) from the label's N scores ``c``: the integral of one minus the shifted DKW upper CDF band."""
    c = np.asarray(c, np.float64)
    N = len(c)
    e = math.sqrt(math.log(1 / alpha) / (2 * N))
    b = sorted(set([0.0, 1.0] + c.tolist()))
    total = 0.0
    for k in range(1, len(b)):
        F = np.count_nonzero(c <= b[k - 1]) / N
        total += (b[k] - b[k - 1]) * (1 - cdf(ppf(min(1.0, F + e)) + eps / sigma))
    return total


def tau_of(E, miscoverage, alpha):
    n_cal = len(E)
    k = math.floor((n_cal + 1) * (miscoverage - 2 * alpha))
    return -math.inf if k < 1 else float(np.sort(np.asarray(E, np.float64))[k - 1])


def upper(mean, var, N, alpha, bound):
    if bound == "hoeffding":
        b = math.sqrt(math.log(1 / alpha) / (2 * N))
    elif N < 2:
        return 1.0
    else:
        b = math.sqrt(2 * max(var, 0.0) * math.log(2 / alpha) / N) + 7 * math.log(2 / alpha) / (3 * (N - 1))
    return min(1.0, mean + b)


def member(U, tau, variant, eps, sigma, N, alpha):
    """(in the set, distance to the boundary) of one class."""
    if tau == -math.inf:
        return True, math.inf
    if variant == "cas":
        return U >= tau, abs(U - tau)
    bH = math.sqrt(math.log(1 / alpha) / (2 * N))
    lhs, rhs = ppf(U) + eps / sigma, ppf(max(0.0, tau - bH))
    gap = math.inf if math.isinf(lhs) or math.isinf(rhs) else abs(lhs - rhs)
    return lhs >= rhs, gap


def split(idx, fraction, seed):
    order = np.argsort(np.asarray(idx))
    perm = np.random.default_rng(seed).permutation(len(idx))
    k = math.floor(fraction * len(idx))
    return set(order[perm[:k]].tolist()), set(order[perm[k:]].tolist())


def calibration_scores(cal, *, N, eps, variant, sigma, alpha):
    """E_i of every calibration input from its label's scores ``cal[i]`` (first N): the mean, or the cas score."""
    return [np.mean(c[:N]) if variant == "rscp+" else cas_score(c[:N], eps, sigma, alpha) for c in cal]


def reference_sets(test, E, *, N, miscoverage, eps, variant, bound, sigma, alpha):
    """({test position: (set, edge classes)}, tau) for one setting.

    ``test``: {position: test-side score rows (N', m)} per test input; ``E``:
    the calibration scores (``calibration_scores``).
    """
    tau = tau_of(E, miscoverage, alpha)
    out = {}
    for pos, rows in test.items():
        s = rows[:N]
        mean, var = s.mean(axis=0), s.var(axis=0, ddof=1) if N > 1 else np.zeros(s.shape[1])
        members, edge = set(), set()
        for y in range(s.shape[1]):
            inside, gap = member(upper(mean[y], var[y], N, alpha, bound), tau, variant, eps, sigma, N, alpha)
            if inside:
                members.add(y)
            if gap < EDGE:
                edge.add(y)
        out[pos] = (members, edge)
    return out, tau
