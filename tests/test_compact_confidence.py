"""cdf and soft on compact stores that keep their selection rows whole (docs/methods.md section 9), both rules.

Real stores: each random case is imported as a full float16 store and
compacted (``store compact``, layout compact-s0), and both are certified
through ``certify``. The references below are independent of the certifier:
they materialise section 9's values (L, and U for soft) as numpy arrays from
the full store's rows and the compact store's top-K classes, and run sections
4 and 7 written here with numpy and scipy (order statistics, exact tie
counts, Phi, brentq for the radius; means, sample variances, the Bernstein
and Hoeffding bounds). Block-level tests feed numpy-built blocks to the
compute functions, as the engine hands them over.
"""
from __future__ import annotations

import json
import math
import types

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import optimize, stats

from smoothcert import cli
from smoothcert.certifier import CertifyOptions, certify, get_method
from smoothcert.certifier import cdf as C
from smoothcert.certifier import compact_bounds as CB
from smoothcert.certifier.block import Block
from smoothcert.certifier.compact import compact_fields, statement
from smoothcert.store import open_store
from smoothcert.store.compact import compact_rows, compact_store

RADIUS_TOL = 1e-4  # docs/methods.md section 4: each cdf radius is within 1e-4 below its supremum, on either store
RANGES = {"score": (0.0, 1.0), "margin": (-1.0, 1.0)}  # section 4: each measure's range [a, b]
RULES = ("spec", "dominated")


# ---------------------------------------------------------------- random stores
def random_probs(rng, N, R, m, kind):
    """(N, R, m) float16-representable rows, float32: peaked on a per-input class, with ties or zeros by kind."""
    logits = rng.standard_normal((N, R, m)) * rng.uniform(0.5, 2.5, size=(N, 1, 1))
    top = rng.integers(0, m, N)
    logits[np.arange(N), :, top] += rng.uniform(0.0, 5.0, size=(N, 1))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    if kind == "ties":  # multiples of 1/32: many equal values in a row and across rows, exact in float16
        p = np.stack([[rng.multinomial(32, row) for row in inp] for inp in p]) / 32.0
    elif kind == "zeros":  # a third of the entries exactly 0
        p = np.where(rng.random(p.shape) < 0.33, 0.0, p)
        p[..., 0] += (p.sum(-1) == 0)
        p /= p.sum(-1, keepdims=True)
    return p.astype(np.float16).astype(np.float32)


def compact_block(rows, n0, sigma, K, labels, n_use=None, n0_use=None):
    """A Block as a compact store with whole selection rows gives it: rows0 whole, top-K of every row."""
    N, R, m = rows.shape
    tp = np.empty((N, R, K), np.float32)
    tc = np.empty((N, R, K), np.uint16)
    ent = np.empty((N, R))
    for b in range(N):
        p, c, e = compact_rows(rows[b].astype(np.float16), K)
        tp[b], tc[b], ent[b] = p.astype(np.float32), c, e
    return Block(idx=np.arange(N), label=np.asarray(labels), n_rows=np.full(N, R, np.int64),
                 core_predict=np.full(N, -1, np.int64), n0=n0, n0_use=n0 if n0_use is None else n0_use,
                 n_use=R - n0 if n_use is None else n_use, sigma=sigma, m=m,
                 argmax=rows.argmax(-1).astype(np.int64),
                 compact={"topk_p": tp, "topk_c": tc, "entropy": ent, "rows0": rows[:, :n0].copy()})


def full_block(rows, n0, sigma, labels):
    N, R, m = rows.shape
    return Block(idx=np.arange(N), label=np.asarray(labels), n_rows=np.full(N, R, np.int64),
                 core_predict=np.full(N, -1, np.int64), n0=n0, n0_use=n0, n_use=R - n0, sigma=sigma, m=m,
                 argmax=rows.argmax(-1).astype(np.int64), rows=rows)


def run_block(block, method, opts):
    df = get_method(method).compute(block, opts.validate())
    pos = df.pop("_pos").to_numpy()
    df.insert(0, "idx", block.idx[pos])
    return df.reset_index(drop=True)


# (seed, m, K, n0, n, kind): K = m, K = 2, many classes, ties, zeros, n above and below the cdf's --K
CASES = [
    (1, 5, 5, 30, 400, "plain"),
    (2, 5, 2, 30, 400, "plain"),
    (3, 12, 3, 40, 600, "ties"),
    (4, 12, 12, 40, 300, "ties"),
    (5, 30, 4, 50, 500, "zeros"),
    (6, 3, 2, 20, 800, "ties"),
    (7, 40, 2, 50, 700, "plain"),
    (8, 8, 8, 25, 250, "zeros"),
    (9, 20, 5, 30, 1500, "ties"),
    (10, 2, 2, 20, 300, "plain"),
]
N_INPUTS, SIGMA = 8, 0.5
# --K 10,000 >= n: thresholds at every order statistic (gap 1); 37 and 100: gap > 1
CDF_OPTS = [dict(alpha=0.05, K=10_000), dict(alpha=0.05, K=37), dict(alpha=0.001, K=100)]
THRESHOLDS = [0.05, 0.3, 0.5, 0.8]
SOFT_ALPHAS = (0.001, 0.2)


def _case_ids():
    return [f"m{m}-K{K}-n{n}-{kind}" for _, m, K, _, n, kind in CASES]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Per case: full store, its compact store (``store compact --topk K``), the full rows (float32), the compact
    store's top-K values and classes, labels."""
    from smoothcert.store.importer import import_npz

    d = tmp_path_factory.mktemp("cc")
    out = {}
    for seed, m, K, n0, n, kind in CASES:
        rng = np.random.default_rng(seed)
        probs = random_probs(rng, N_INPUTS, n0 + n, m, kind)
        labels = rng.integers(0, m, N_INPUTS)
        np.savez(d / f"{seed}.npz", probs=probs.astype(np.float16), labels=labels)
        import_npz(d / f"{seed}.npz", d / f"{seed}.zarr", sigma=SIGMA, n0=n0, dtype="float16")
        compact_store(str(d / f"{seed}.zarr"), str(d / f"{seed}-top{K}.zarr"), topk=K)
        with open_store(d / f"{seed}.zarr") as st:
            rows = st.read_block(0, N_INPUTS, fields=("rows",))["rows"]
        with open_store(d / f"{seed}-top{K}.zarr") as st:
            assert st.keeps_full_s0
            comp = st.read_block(0, N_INPUTS, fields=("compact",))
        out[seed] = types.SimpleNamespace(full=d / f"{seed}.zarr", compact=d / f"{seed}-top{K}.zarr", rows=rows,
                                          topk_p=comp["topk_p"], topk_c=comp["topk_c"], labels=labels, m=m, K=K,
                                          n0=n0, n=n)
    return out


_TABLES: dict = {}


def table(case, method, where, **opts):
    """``certify`` of the case's full or compact store (cached: several tests read the same tables)."""
    key = (str(case.full), method, where, json.dumps(opts, sort_keys=True))
    if key not in _TABLES:
        _TABLES[key] = certify(case.full if where == "full" else case.compact, method, CertifyOptions(**opts),
                               progress=False)[0]
    return _TABLES[key]


def cdf_opts(kw, rule=None):
    out = dict(measure=["score", "margin"], bound=["cdf", "hoeffding"], threshold=THRESHOLDS, **kw)
    return out if rule is None else {**out, "compact_rule": rule}


# ---------------------------------------------------------------- independent references (numpy, scipy)
def ref_class(rows0):
    """The argmax of the mean selection row (float64), ties to the lowest class."""
    return np.array([int(np.argmax(r.astype(np.float64).mean(axis=0))) for r in rows0])


def ref_exact(tc_S, m):
    """(n, m) bool: is class j among the row's stored top K?"""
    n = tc_S.shape[0]
    out = np.zeros((n, m), bool)
    out[np.arange(n)[:, None], tc_S.astype(np.int64)] = True
    return out


def ref_L_values(rows_S, tc_S, tp_S, c, measure):
    """Section 9's cdf values of class c: the full value where c is in the top K, else 0 (score) or -p_(1)."""
    rows = rows_S.astype(np.float64)
    in_top = ref_exact(tc_S, rows.shape[1])[:, c]
    if measure == "score":
        full = rows[:, c]
        bound = np.zeros(len(rows))
    else:
        full = rows[:, c] - np.delete(rows, c, axis=1).max(axis=1)
        bound = -tp_S[:, 0].astype(np.float64)
    return np.where(in_top, full, bound), full, in_top


def ref_L_U(rows_S, tc_S, tp_S):
    """Section 9's soft values, materialised (n, m): L (exact or 0), U (exact or t_i), entries clipped to [0, 1]."""
    x = np.clip(rows_S.astype(np.float64), 0, 1)
    exact = ref_exact(tc_S, x.shape[1])
    t = np.clip(tp_S[:, -1].astype(np.float64), 0, 1)[:, None]
    return np.where(exact, x, 0.0), np.where(exact, x, t), exact


def ref_cdf_lower(z, bound, measure, K, alpha, sigma):
    """lower(R) of docs/methods.md section 4 from the values z: exact tie counts, thresholds every ceil(n/K)."""
    a, b = RANGES[measure]
    z = np.sort(np.clip(np.asarray(z, np.float64), a, b))
    n = z.size
    eps = math.sqrt(math.log(1 / alpha) / (2 * n))
    if bound == "hoeffding":
        q = min(max((z.mean() - (b - a) * eps - a) / (b - a), 0.0), 1.0)
        return lambda R: a + (b - a) * stats.norm.cdf(stats.norm.ppf(q) - R / sigma)
    gap = math.ceil(n / min(K, n))
    s = z[np.arange(0, n, gap)]
    q = np.maximum(np.array([(z >= v).sum() for v in s]) / n - eps, 0.0)
    w = np.diff(np.r_[a, s])
    return lambda R: a + float(np.sum(w * stats.norm.cdf(stats.norm.ppf(q) - R / sigma)))


def ref_radius(lower, t):
    """sup{R >= 0 : lower(R) >= t} (brentq), or None when lower(0) < t."""
    if lower(0.0) < t:
        return None
    hi = 1.0
    while lower(hi) >= t:
        hi *= 2
    return optimize.brentq(lambda R: lower(R) - t, 0.0, hi, xtol=1e-12)


def ref_mean_bounds(x, d, bound):
    """(lower, upper) of the mean of the columns of x (values in [0, 1]) at level d: Bernstein or Hoeffding."""
    return ref_bounds_from(x.mean(axis=0), x.var(axis=0, ddof=1) if x.shape[0] > 1 else np.nan, x.shape[0], d, bound)


def ref_bounds_from(mean, var, n, d, bound):
    """Section 7's bounds from a mean and an unbiased sample variance of n values in [0, 1], clipped to [0, 1]."""
    if bound == "bernstein":
        lg = math.log(2 / d)
        half = np.sqrt(2 * var * lg / n) + 7 * lg / (3 * (n - 1))
    else:
        half = math.sqrt(math.log(1 / d) / (2 * n))
    return np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1)


def ref_full_mean_var(rows):
    """Per class, the mean and unbiased sample variance of the full rows (entries clipped to [0, 1]), in numpy."""
    x = np.clip(np.asarray(rows, np.float64), 0, 1)
    return x.mean(axis=0), x.var(axis=0, ddof=1)


def ref_soft(L, U, c, alpha, sigma, bound):
    """docs/methods.md section 7 on L (class c) and U (the others): (predict, radius, lower_c, pB)."""
    m = L.shape[1]
    lower_c = float(ref_mean_bounds(L[:, [c]], alpha / 2, bound)[0][0])
    upper = ref_mean_bounds(np.delete(U, c, axis=1), alpha / (2 * (m - 1)), bound)[1]
    pB = min(1 - lower_c, float(upper.max()))
    radius = sigma / 2 * (stats.norm.ppf(lower_c) - stats.norm.ppf(pB))
    return (c, radius, lower_c, pB) if radius > 0 else (-1, 0.0, lower_c, pB)


# ---------------------------------------------------------------- spec: sections 4 and 7 on the bounded values
@pytest.mark.parametrize("case", CASES, ids=_case_ids())
def test_spec_cdf_is_section_4_unchanged_on_the_bounded_values(stores, case):
    cs = stores[case[0]]
    cls = ref_class(cs.rows[:, :cs.n0])
    for kw in CDF_OPTS:
        got = table(cs, "cdf", "compact", **cdf_opts(kw))  # --compact-rule spec is the default
        assert len(got) == N_INPUTS * 2 * 2 * len(THRESHOLDS)
        for (idx, measure, bound), g in got.groupby(["idx", "measure", "bound"], sort=False):
            est = slice(cs.n0, None)
            L, _, in_top = ref_L_values(cs.rows[idx, est], cs.topk_c[idx, est], cs.topk_p[idx, est], cls[idx],
                                        measure)
            lower = ref_cdf_lower(L, bound, measure, kw["K"], kw["alpha"], SIGMA)
            assert (g["rows_bounded"] == (~in_top).sum()).all()
            assert g["lower0"].to_numpy() == pytest.approx(np.full(len(g), lower(0.0)), rel=1e-12, abs=1e-12)
            for t, pred, rad in zip(g["threshold"], g["predict"], g["radius"]):
                want = ref_radius(lower, t)
                if want is None:
                    assert pred == -1 and rad == 0
                else:
                    assert pred == cls[idx] and want - RADIUS_TOL - 1e-9 <= rad <= want + 1e-9


@pytest.mark.parametrize("case", CASES, ids=_case_ids())
def test_spec_soft_is_section_7_unchanged_on_the_bounded_values(stores, case):
    cs = stores[case[0]]
    cls = ref_class(cs.rows[:, :cs.n0])
    for alpha in SOFT_ALPHAS:
        got = table(cs, "soft", "compact", alpha=alpha, bound=["bernstein", "hoeffding"])
        assert len(got) == 2 * N_INPUTS
        for _, row in got.iterrows():
            b = int(row["idx"])
            L, U, _ = ref_L_U(cs.rows[b, cs.n0:], cs.topk_c[b, cs.n0:], cs.topk_p[b, cs.n0:])
            pred, rad, pl, pu = ref_soft(L, U, cls[b], alpha, SIGMA, row["bound"])
            assert row["p_lower"] == pytest.approx(pl, rel=1e-10, abs=1e-13)
            assert row["p_upper"] == pytest.approx(pu, rel=1e-10, abs=1e-13)
            assert row["predict"] == pred and row["radius"] == pytest.approx(rad, rel=1e-8, abs=1e-10)


def test_spec_soft_statistics_are_the_means_and_sample_variances_of_L_and_U():
    """Per class, to 1e-12 relative: random blocks with ties, zeros, K = m, a class in half the rows or more
    (summed over its bounded rows), n = 1 and n = 2; a class in every row's top K gets the full rows' statistics."""
    rng = np.random.default_rng(5)
    paths = {"walk": 0, "difference": 0}
    for trial in range(60):
        m = int(rng.integers(2, 14))
        K = int(rng.integers(2, m + 1))
        n = [1, 2, 3][trial] if trial < 3 else int(rng.integers(4, 300))
        rows = random_probs(rng, 1, n, m, ["plain", "ties", "zeros"][trial % 3])[0]
        p, c, _ = compact_rows(rows.astype(np.float16), K)
        st = CB.soft_stats_spec(p.astype(np.float32)[None], c[None], m)
        L, U, exact = ref_L_U(rows, c, p)
        held = exact.sum(axis=0)
        assert np.array_equal(st.bounded[0], n - held)
        np.testing.assert_allclose(st.mean_lower[0], L.mean(axis=0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(st.mean_upper[0], U.mean(axis=0), rtol=1e-12, atol=1e-15)
        if n < 2:
            assert np.isnan(st.var_lower).all() and np.isnan(st.var_upper).all()
            continue
        np.testing.assert_allclose(st.var_lower[0], L.var(axis=0, ddof=1), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(st.var_upper[0], U.var(axis=0, ddof=1), rtol=1e-12, atol=1e-15)
        mean, var = ref_full_mean_var(rows)
        every = held == n
        for arr in (st.mean_lower, st.mean_upper):
            np.testing.assert_allclose(arr[0][every], mean[every], rtol=1e-12, atol=1e-15)
        for arr in (st.var_lower, st.var_upper):
            np.testing.assert_allclose(arr[0][every], var[every], rtol=1e-12, atol=1e-15)
        paths["walk"] += int(((2 * held >= n) & (held < n)).sum())
        paths["difference"] += int((2 * held < n).sum())
    assert paths["walk"] >= 20 and paths["difference"] >= 20


def test_spec_soft_statistics_at_1000_classes_match_a_materialised_reference():
    """m = 1,000, n = 4,000, K = 5: soft_stats_spec builds no (n, m) array; the reference does."""
    rng = np.random.default_rng(0)
    n, m, K = 4000, 1000, 5
    others = np.delete(np.arange(m), 7)
    tc = np.stack([np.r_[7, rng.choice(others, K - 1, replace=False)] if i < 3 * n // 4  # class 7 in 3/4 of rows
                   else rng.choice(others, K, replace=False) for i in range(n)]).astype(np.uint16)
    tp = np.sort(rng.dirichlet(np.ones(K), size=n) * 0.9, axis=1)[:, ::-1].astype(np.float32)
    st = CB.soft_stats_spec(tp[None], tc[None], m)
    exact = ref_exact(tc, m)
    x = np.zeros((n, m))
    x[np.arange(n)[:, None], tc.astype(np.int64)] = tp
    L, U = np.where(exact, x, 0.0), np.where(exact, x, tp[:, -1:].astype(np.float64))
    assert np.array_equal(st.bounded[0], n - exact.sum(axis=0)) and st.bounded[0, 7] == n // 4
    np.testing.assert_allclose(st.mean_lower[0], L.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(st.mean_upper[0], U.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(st.var_lower[0], L.var(axis=0, ddof=1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(st.var_upper[0], U.var(axis=0, ddof=1), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- both rules against the full store
@pytest.mark.parametrize("case", CASES, ids=_case_ids())
def test_cdf_equals_the_full_store_where_the_class_is_in_every_rows_top_k_under_both_rules(stores, case):
    cs = stores[case[0]]
    for kw in CDF_OPTS:
        full = table(cs, "cdf", "full", **cdf_opts(kw))
        for rule in RULES:
            comp = table(cs, "cdf", "compact", **cdf_opts(kw, rule))
            for col in ("idx", "label", "measure", "bound", "threshold"):
                assert (comp[col].to_numpy() == full[col].to_numpy()).all(), col
            exact = comp["rows_bounded"].to_numpy() == 0
            for col in ("predict", "radius", "lower0"):
                assert np.array_equal(comp[col].to_numpy()[exact], full[col].to_numpy()[exact]), col
            if cs.K == cs.m:
                assert exact.all()
                pd.testing.assert_frame_equal(comp.drop(columns="rows_bounded"), full, check_exact=True)


@pytest.mark.parametrize("case", [c for c in CASES if c[1] == c[2]], ids=[i for c, i in zip(CASES, _case_ids())
                                                                          if c[1] == c[2]])
def test_soft_equals_the_full_store_when_k_is_m_under_both_rules(stores, case):
    cs = stores[case[0]]
    for alpha in SOFT_ALPHAS:
        full = table(cs, "soft", "full", alpha=alpha, bound=["bernstein", "hoeffding"])
        for rule in RULES:
            comp = table(cs, "soft", "compact", alpha=alpha, bound=["bernstein", "hoeffding"], compact_rule=rule)
            assert (comp["rows_bounded"] == 0).all()
            pd.testing.assert_frame_equal(comp.drop(columns="rows_bounded"), full, check_exact=True)


def _never_above(comp, full, radius_tol):
    """A class only where the full store certifies it, and a radius never above the full one (up to radius_tol)."""
    fp, cp = full["predict"].to_numpy(), comp["predict"].to_numpy()
    assert ((cp == -1) | (cp == fp)).all()
    fr = full["radius"].to_numpy()
    assert (comp["radius"].to_numpy() <= fr + radius_tol).all()


@pytest.mark.parametrize("case", CASES, ids=_case_ids())
def test_dominated_never_exceeds_the_full_store(stores, case):
    cs = stores[case[0]]
    for kw in CDF_OPTS:
        full = table(cs, "cdf", "full", **cdf_opts(kw))
        comp = table(cs, "cdf", "compact", **cdf_opts(kw, "dominated"))
        _never_above(comp, full, RADIUS_TOL)
        assert (comp["lower0"].to_numpy() <= full["lower0"].to_numpy() + 1e-12).all()
    for alpha in SOFT_ALPHAS:
        full = table(cs, "soft", "full", alpha=alpha, bound=["bernstein", "hoeffding"])
        comp = table(cs, "soft", "compact", alpha=alpha, bound=["bernstein", "hoeffding"], compact_rule="dominated")
        _never_above(comp, full, 0.0)
        assert (comp["p_lower"].to_numpy() <= full["p_lower"].to_numpy()).all()
        assert (comp["p_upper"].to_numpy() >= full["p_upper"].to_numpy()).all()
        exact = comp["rows_bounded"].to_numpy() == 0  # 0: c and the binding class in every row's top K
        for col in ("predict", "radius", "p_lower", "p_upper"):
            assert np.array_equal(comp[col].to_numpy()[exact], full[col].to_numpy()[exact]), col


@pytest.mark.parametrize("case", CASES, ids=_case_ids())
def test_spec_never_exceeds_the_full_store_in_its_monotone_cases(stores, case):
    """cdf with thresholds at every order statistic (--K >= n, gap 1) and every hoeffding bound: monotone in the
    values, so the bounded values give at most the full certificate (up to rounding)."""
    cs = stores[case[0]]
    for kw in CDF_OPTS:
        full = table(cs, "cdf", "full", **cdf_opts(kw))
        comp = table(cs, "cdf", "compact", **cdf_opts(kw))
        mono = (comp["bound"] == "hoeffding").to_numpy() | (kw["K"] >= cs.n)
        _never_above(comp[mono], full[mono], RADIUS_TOL)
        assert (comp["lower0"].to_numpy()[mono] <= full["lower0"].to_numpy()[mono] + 1e-12).all()
    for alpha in SOFT_ALPHAS:
        full = table(cs, "soft", "full", alpha=alpha, bound=["bernstein", "hoeffding"])
        comp = table(cs, "soft", "compact", alpha=alpha, bound=["bernstein", "hoeffding"])
        mono = (comp["bound"] == "hoeffding").to_numpy()
        _never_above(comp[mono], full[mono], 1e-12)
        assert (comp["p_lower"].to_numpy()[mono] <= full["p_lower"].to_numpy()[mono] + 1e-15).all()
        assert (comp["p_upper"].to_numpy()[mono] >= full["p_upper"].to_numpy()[mono] - 1e-15).all()


def test_the_random_cases_cover_what_they_claim(stores):
    """The random stores exercise classes outside the top K, ties, zeros, gap 1 and gap > 1, and certificates
    of both kinds where a row was bounded."""
    outside = ties = zeros = 0
    for seed, m, _, n0, _, _ in CASES:
        cs = stores[seed]
        cls = ref_class(cs.rows[:, :n0])
        outside += sum(int((~ref_exact(cs.topk_c[b, n0:], m)[:, cls[b]]).any()) for b in range(N_INPUTS))
        ties += int(any(len(np.unique(r)) < r.size for r in cs.rows[:, n0:].reshape(-1, m)[:50]))
        zeros += int((cs.rows == 0).any())
    assert outside >= 10 and ties >= 3 and zeros >= 3
    assert any(kw["K"] >= c[4] for kw in CDF_OPTS for c in CASES) and any(kw["K"] < c[4] for kw in CDF_OPTS
                                                                           for c in CASES)
    cs = stores[2]
    for rule in RULES:
        comp = table(cs, "soft", "compact", alpha=0.2, bound=["bernstein", "hoeffding"], compact_rule=rule)
        assert ((comp["predict"] >= 0) & (comp["rows_bounded"] > 0)).any()
        comp = table(cs, "cdf", "compact", **cdf_opts(CDF_OPTS[1], rule))
        assert ((comp["predict"] >= 0) & (comp["rows_bounded"] > 0)).any()


# ---------------------------------------------------------------- the documented counterexamples (spec > full)
def _store(make_store, probs, n0, labels):
    """A full float32 store of ``probs`` and its compact-s0 copy with top 2."""
    full = make_store(np.asarray(probs, np.float32), np.asarray(labels), n0, sigma=0.5, dtype="float32")
    comp = full.parent / f"{full.name}-top2"
    compact_store(str(full), str(comp), topk=2)
    return full, comp


def test_spec_cdf_exceeds_the_full_store_in_the_documented_tie_counting_example(make_store):
    """n = 5, --K 2 (thresholds every 3rd order statistic), alpha = 0.3: class 3's scores (0, 1/8, 1/8, 1/4, 1/2);
    the 1/4 row has class 3 third (outside the top 2), so its value becomes 0. The threshold 1/4 of the full
    store becomes 1/8, counted with its tie: lower(0) 0.0316 against 0.0133. dominated stays below."""
    n0 = 10
    sel = np.tile([0.0, 0.0, 0.1, 0.9], (n0, 1))
    est = np.array([[1.0, 0, 0, 0], [0.875, 0, 0, 0.125], [0.875, 0, 0, 0.125], [0, 0.375, 0.375, 0.25],
                    [0.5, 0, 0, 0.5]])
    full, comp = _store(make_store, np.r_[sel, est][None], n0, [3])
    opts = dict(alpha=0.3, K=2, measure=["score"], bound=["cdf"], threshold=[0.02])
    f = certify(full, "cdf", CertifyOptions(**opts), progress=False)[0].iloc[0]
    s = certify(comp, "cdf", CertifyOptions(**opts), progress=False)[0].iloc[0]
    d = certify(comp, "cdf", CertifyOptions(**opts, compact_rule="dominated"), progress=False)[0].iloc[0]
    eps = math.sqrt(math.log(1 / 0.3) / 10)
    assert f["lower0"] == pytest.approx(0.25 * (2 / 5 - eps), rel=1e-12) == pytest.approx(0.01325, abs=5e-5)
    assert s["lower0"] == pytest.approx(0.125 * (3 / 5 - eps), rel=1e-12) == pytest.approx(0.03163, abs=5e-5)
    assert s["rows_bounded"] == 2  # the 1/4 row, and the row of score 0 (class 3 ties with 0s, lower classes first)
    assert f["predict"] == -1 and s["predict"] == 3 and s["radius"] > 0.05
    assert d["lower0"] <= f["lower0"] and d["predict"] == -1


def test_spec_soft_exceeds_the_full_store_in_the_documented_bernstein_example(make_store):
    """n = 1,000, m = 3, top 2: 990 rows (0.6, 0.3, 0.1) and 10 rows (0.6, 0.1, 0.3). U is 0.3 in every row for
    classes 1 and 2 (variance 0): the upper bound 0.3210 falls below the full column's 0.3217, and the spec
    radius (0.1671) exceeds the full store's (0.1666). dominated stays below."""
    n0, n = 20, 1000
    rows = np.r_[np.tile([0.6, 0.3, 0.1], (n0 + n - 10, 1)), np.tile([0.6, 0.1, 0.3], (10, 1))]
    full, comp = _store(make_store, rows[None], n0, [0])
    opts = dict(alpha=0.001, bound=["bernstein"])
    f = certify(full, "soft", CertifyOptions(**opts), progress=False)[0].iloc[0]
    s = certify(comp, "soft", CertifyOptions(**opts), progress=False)[0].iloc[0]
    d = certify(comp, "soft", CertifyOptions(**opts, compact_rule="dominated"), progress=False)[0].iloc[0]
    assert f["p_upper"] == pytest.approx(0.3217, abs=5e-5) and s["p_upper"] == pytest.approx(0.3210, abs=5e-5)
    assert f["radius"] == pytest.approx(0.1666, abs=5e-5) and s["radius"] == pytest.approx(0.1671, abs=5e-5)
    assert s["radius"] > f["radius"] and s["predict"] == f["predict"] == 0
    assert d["radius"] <= f["radius"] and d["p_upper"] >= f["p_upper"]
    # the spec value is section 7 on the materialised U: variance 0, so the upper bound is 0.3 + 7 ln(2/d)/(3(n-1))
    lg = math.log(2 / (0.001 / 4))
    assert s["p_upper"] == pytest.approx(np.float32(0.3) + 7 * lg / (3 * (n - 1)), rel=1e-9)


# ---------------------------------------------------------------- dominated: the adjusted procedures
def ref_dominated_stats(rows_S, topk_p_S, topk_c_S):
    """(mean_lower, mean_upper, var_bound, bounded) per class, materialising L, U and the box (numpy)."""
    L, U, exact = ref_L_U(rows_S, topk_c_S, topk_p_S)
    x = np.clip(rows_S.astype(np.float64), 0, 1)
    n = x.shape[0]
    t = np.clip(topk_p_S[:, -1].astype(np.float64), 0, 1)[:, None]
    c0 = np.where(exact, x, t / 2).mean(axis=0)
    box = np.where(exact, (x - c0) ** 2, np.maximum(c0, t - c0) ** 2)
    return L.mean(0), U.mean(0), box.sum(0) / (n - 1), (~exact).sum(0)


@pytest.mark.parametrize("case", CASES, ids=_case_ids())
def test_dominated_soft_statistics_match_a_materialised_reference_and_bound_every_column(stores, case):
    cs = stores[case[0]]
    n0, n, m = cs.n0, cs.n, cs.m
    block = compact_block(cs.rows, n0, SIGMA, cs.K, cs.labels)
    tp, tc = block.compact["topk_p"], block.compact["topk_c"]
    st = CB.soft_stats_dominated(tp, tc, m, n0, n0 + n)
    assert st.var_lower is st.var_upper
    for b in range(N_INPUTS):
        full_mean, full_var = ref_full_mean_var(cs.rows[b, n0:])
        ml, mu, vb, bd = ref_dominated_stats(cs.rows[b, n0:], tp[b, n0:], tc[b, n0:])
        assert np.array_equal(st.bounded[b], bd)
        np.testing.assert_allclose(st.mean_lower[b], ml, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(st.mean_upper[b], mu, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(st.var_upper[b], vb, rtol=1e-7, atol=1e-12)
        # conservative: the lower mean at or below the full rows' mean, the upper mean and the variance bound at
        # or above the full rows' (up to the last bits of two summation orders; the tables of both stores are
        # compared float for float in test_dominated_never_exceeds_the_full_store)
        assert (st.mean_lower[b] <= full_mean * (1 + 1e-12) + 1e-15).all()
        assert (st.mean_upper[b] >= full_mean * (1 - 1e-12) - 1e-15).all()
        assert (st.var_upper[b] >= full_var * (1 - 1e-12) - 1e-15).all()
        exact = bd == 0
        for arr, want in ((st.mean_lower, full_mean), (st.mean_upper, full_mean), (st.var_upper, full_var)):
            np.testing.assert_allclose(arr[b][exact], want[exact], rtol=1e-12, atol=1e-15)


def test_dominated_variance_bound_covers_the_extreme_columns_of_the_box():
    """Every column in the box (exact values fixed, the others anywhere in [0, t_i]) has variance <= the bound."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        m, n = int(rng.integers(3, 9)), int(rng.integers(3, 40))
        K = int(rng.integers(2, m + 1))
        rows = random_probs(rng, 1, n, m, ["plain", "ties", "zeros"][trial % 3])[0]
        p, c, _ = compact_rows(rows.astype(np.float16), K)
        st = CB.soft_stats_dominated(p.astype(np.float32)[None], c[None], m)
        exact = ref_exact(c, m)
        t = p[:, -1].astype(np.float64)
        for j in range(m):
            free = ~exact[:, j]
            for _ in range(20):  # random vertices of the box, where the variance is largest
                col = rows[:, j].astype(np.float64).copy()
                col[free] = np.where(rng.random(free.sum()) < 0.5, 0.0, t[free])
                assert np.var(col, ddof=1) <= st.var_upper[0, j] * (1 + 1e-12) + 1e-300
                assert col.mean() <= st.mean_upper[0, j] + 1e-15


def test_bernstein_on_the_replaced_values_can_exceed_the_full_row_bound_but_the_variance_bound_cannot():
    """The Bernstein counterexample at the level of one column: U's bound is smaller, the dominated one is not."""
    n, m, alpha = 1000, 3, 0.001
    full = np.r_[np.full(990, 0.3), np.full(10, 0.1)]   # class 1: 0.3 where in the top 2, 0.1 where not ...
    U = np.full(n, 0.3)                                  # ... and bounded by t_i = 0.3 there
    d = alpha / (2 * (m - 1))
    up_full = ref_bounds_from(full.mean(), full.var(ddof=1), n, d, "bernstein")[1]
    up_spec = ref_bounds_from(U.mean(), U.var(ddof=1), n, d, "bernstein")[1]
    assert up_spec < up_full - 5e-4                     # a smaller upper bound: a larger certificate
    rows = np.r_[np.tile([0.6, 0.3, 0.1], (990, 1)), np.tile([0.6, 0.1, 0.3], (10, 1))].astype(np.float32)
    p, c, _ = compact_rows(rows, 2)
    spec = CB.soft_stats_spec(p[None], c[None], 3)
    dom = CB.soft_stats_dominated(p[None], c[None], 3)
    assert spec.bounded[0, 1] == 10 and spec.var_upper[0, 1] == 0
    assert ref_bounds_from(spec.mean_upper[0, 1], spec.var_upper[0, 1], n, d, "bernstein")[1] < up_full
    assert ref_bounds_from(dom.mean_upper[0, 1], dom.var_upper[0, 1], n, d, "bernstein")[1] >= up_full


def test_tie_crediting_cdf_counts_are_not_monotone_and_the_tie_free_count_is():
    """Lowering one value onto a threshold raises the exact-count bound; the tie-free count never rises."""
    ms = C.MEASURES["score"]
    z = np.sort(np.array([0.0, 0.125, 0.125, 0.25, 0.5]))
    z_low = np.sort(np.array([0.0, 0.125, 0.125, 0.0, 0.5]))   # 1/4 bounded to 0: pointwise at or below z
    w, u = C.input_terms(z, "cdf", ms, 2, 0.3)
    exact_full = C.lower_bound(0.0, ms.a, w, u, 0.5)[0]
    w, u = C.input_terms(z_low, "cdf", ms, 2, 0.3)
    exact_low = C.lower_bound(0.0, ms.a, w, u, 0.5)[0]
    assert exact_low > 2 * exact_full
    w, u = CB.input_terms(z_low, "cdf", ms, 2, 0.3, bounded=True)
    assert C.lower_bound(0.0, ms.a, w, u, 0.5)[0] <= exact_full


def ref_tie_free_lower0(z, K, alpha, a):
    zs = np.sort(z)
    n = zs.size
    gap = math.ceil(n / min(K, n))
    eps = math.sqrt(math.log(1 / alpha) / (2 * n))
    idx = np.arange(0, n, gap)
    s = zs[idx]
    q = np.maximum((n - idx) / n - eps, 0)
    return a + float(np.sum(np.diff(np.r_[a, s]) * q))


def test_tie_free_cdf_bound_is_monotone_and_loses_at_most_one_over_k():
    rng = np.random.default_rng(8)
    ms = C.MEASURES["score"]
    for _ in range(300):
        n = int(rng.integers(2, 60))
        K = int(rng.integers(1, n + 3))
        z = np.round(rng.random(n) * 8) / 8
        low = np.minimum(z, np.where(rng.random(n) < 0.4, np.round(rng.random(n) * z * 8) / 8, z))
        for R in (0.0, 0.2, 0.7):
            def lower(vals, tie_free, K=K, R=R):
                w, u = CB.input_terms(np.sort(vals), "cdf", ms, K, 0.2, bounded=tie_free)
                return C.lower_bound(R, ms.a, w, u, 0.5)[0]
            assert lower(low, True) <= lower(z, True) + 1e-12 <= lower(z, False) + 2e-12
            # the tie-free count is at most gap/n = about 1/K below the exact one in each q: lower0 within that
            if R == 0.0:
                gap = math.ceil(n / min(K, n))
                assert lower(z, False) - lower(z, True) <= gap / n + 1e-12
                assert lower(z, True) == pytest.approx(ref_tie_free_lower0(z, K, 0.2, 0.0), abs=1e-12)
        if K >= n:  # gap 1: the two counts coincide, and the exact count is monotone too
            assert lower(z, True) == pytest.approx(lower(z, False), abs=1e-15)
            assert lower(low, False) <= lower(z, False) + 1e-12


# ---------------------------------------------------------------- the wiring
def test_compute_functions_take_a_compact_block_with_whole_selection_rows_and_add_rows_bounded():
    rng = np.random.default_rng(21)
    N, n0, n, m, K = 5, 20, 200, 7, 3
    rows = random_probs(rng, N, n0 + n, m, "plain")
    labels = rng.integers(0, m, N)
    comp_block = compact_block(rows, n0, SIGMA, K, labels)
    full = full_block(rows, n0, SIGMA, labels)
    for method in ("cdf", "soft"):
        a = get_method(method).compute(full, CertifyOptions(alpha=0.1))
        for rule in RULES:
            b = get_method(method).compute(comp_block, CertifyOptions(alpha=0.1, compact_rule=rule))
            assert list(b.columns) == list(a.columns) + ["rows_bounded"]
            assert (a["_pos"].to_numpy() == b["_pos"].to_numpy()).all()
            assert b["rows_bounded"].dtype == np.int64 and (b["rows_bounded"] >= 0).all()


def test_the_class_comes_from_the_selection_rows_and_n0_use_limits_them():
    """A compact block picks c on rows0[:, :n0_use] exactly as the full block picks it on rows[:, :n0_use]."""
    rng = np.random.default_rng(4)
    N, n0, n, m, K = 4, 30, 150, 6, 2
    rows = random_probs(rng, N, n0 + n, m, "plain")
    rows[:, :10] = rows[:, :10, ::-1]  # the first ten selection rows favour another class
    for n0_use in (10, 30):
        comp = compact_block(rows, n0, SIGMA, K, np.zeros(N, int), n0_use=n0_use)
        full = full_block(rows, n0, SIGMA, np.zeros(N, int))
        full.n0_use = n0_use
        want = ref_class(rows[:, :n0_use])
        for rule in RULES:
            got = get_method("soft").compute(comp, CertifyOptions(alpha=0.3, compact_rule=rule))
            ful = get_method("soft").compute(full, CertifyOptions(alpha=0.3))
            certified = got["predict"].to_numpy() >= 0
            assert (got["predict"].to_numpy()[certified] == want[got["_pos"].to_numpy()[certified]]).all()
            assert ((got["predict"] == -1) | (ful["predict"] == -1) | (got["predict"] == ful["predict"])).all()
            z = get_method("cdf").compute(comp, CertifyOptions(alpha=0.3, threshold=[0.01], compact_rule=rule))
            zs = z[z["measure"] == "score"]
            ok = zs["predict"].to_numpy() >= 0
            assert ok.any() and (zs["predict"].to_numpy()[ok] == want[zs["_pos"].to_numpy()[ok]]).all()


def test_a_compact_block_without_selection_rows_is_refused():
    rng = np.random.default_rng(1)
    block = compact_block(random_probs(rng, 2, 60, 4, "plain"), 10, SIGMA, 2, [0, 1])
    del block.compact["rows0"]
    for method in ("cdf", "soft"):
        with pytest.raises(ValueError, match=r"need its full selection rows"):
            get_method(method).compute(block, CertifyOptions())


def test_compact_fields_admit_cdf_and_soft_only_when_the_store_says_it_keeps_its_selection_rows():
    """The store side is duck-typed: ``keeps_full_s0`` true; a store object without the attribute keeps none."""
    keeps = types.SimpleNamespace(location="s.zarr", topk=5, keeps_full_s0=True)
    says_no = types.SimpleNamespace(location="s.zarr", topk=5, keeps_full_s0=False)
    silent = types.SimpleNamespace(location="s.zarr", topk=5)
    for name in ("cdf", "soft"):
        method = get_method(name)
        assert compact_fields(method, keeps, method.fields) == ["argmax", "compact", "rows0"]
        assert statement(method, keeps)["certificate"] == "bounded"  # the default rule: spec
        assert statement(method, keeps, CertifyOptions(compact_rule="spec"))["certificate"] == "bounded"
        st = statement(method, keeps, CertifyOptions(compact_rule="dominated"))
        assert st["certificate"] == "conservative" and "--compact-rule dominated" in st["why"]
        for store in (says_no, silent):
            with pytest.raises(ValueError) as e:
                compact_fields(method, store, method.fields, CertifyOptions(compact_rule="dominated"))
            # the refusal of a compact store without whole selection rows, word for word as before section 9
            assert str(e.value) == (
                f"--method {name} needs full softmax rows: its class is the argmax of the mean of the S0 rows, and "
                "a compact store does not know the probabilities outside each row's top-k, so the certificate "
                "could be neither exact nor provably conservative; store s.zarr is compact (top-5): certify the "
                "full store (exact on compact stores: cohen, cohen-predict, two-step, adaptive, incremental, "
                "uncertainty, aces, aces-predict)")
    assert compact_fields(get_method("cohen"), keeps, ("argmax",)) == ["argmax"]
    assert statement(get_method("two-step"), keeps)["certificate"] == "exact"


def test_the_command_line_takes_compact_rule_and_the_sidecar_records_it(stores, tmp_path):
    cs = stores[2]
    for rule, label in (("spec", "bounded"), ("dominated", "conservative")):
        out = tmp_path / f"{rule}.csv"
        r = CliRunner().invoke(cli.main, ["certify", str(cs.compact), "--method", "soft", "--compact-rule", rule,
                                          "--alpha", "0.2", "--out", str(out), "-q"])
        assert r.exit_code == 0, r.output
        meta = json.loads((tmp_path / f"{rule}.csv.meta.json").read_text())
        assert meta["options"]["compact_rule"] == rule
        assert meta["compact"]["certificate"] == label and meta["compact"]["topk"] == cs.K
        got = pd.read_csv(out)
        assert list(got.columns)[-1] == "rows_bounded"
        want = table(cs, "soft", "compact", alpha=0.2, bound=["bernstein"], compact_rule=rule)
        assert np.allclose(got["radius"], want["radius"], rtol=1e-15, atol=0)
    r = CliRunner().invoke(cli.main, ["certify", str(cs.compact), "--method", "cdf", "--compact-rule", "loose",
                                      "--out", str(tmp_path / "x.csv")])
    assert r.exit_code != 0 and r.stderr.splitlines() == [
        "smoothcert: error: --compact-rule must be one of spec, dominated, got 'loose'"]


def test_prefix_lists_on_a_compact_store_certify_each_prefix_from_its_own_rows(stores):
    """--n-use 50,150: the rows for 50 are a single --n-use 50 run at alpha/2 (Bonferroni over the list)."""
    cs = stores[5]
    for method, extra in (("soft", {}), ("cdf", {"threshold": [0.3]})):
        for rule in RULES:
            both = certify(cs.compact, method, CertifyOptions(alpha=0.2, n_use=[50, 150], compact_rule=rule,
                                                              **extra), progress=False)[0]
            for t in (50, 150):
                one = certify(cs.compact, method, CertifyOptions(alpha=0.1, n_use=t, compact_rule=rule, **extra),
                              progress=False)[0]
                part = both[both["n_use"] == t].drop(columns="n_use").reset_index(drop=True)
                pd.testing.assert_frame_equal(part, one, check_exact=True)
                assert (one["rows_bounded"] <= t).all()


# ---------------------------------------------------------------- 1,000 classes, sampled from a real model
def test_a_1000_class_model_sampled_whole_and_top_5_certifies_by_section_9(tmp_path):
    """The 1,000-class test model, sampled into a full store and (``sample --topk 5``) a compact one from the
    same noise: spec is section 9 on the full rows' bounded values, dominated never above the full store."""
    from smoothcert.sampler.run import sample

    model, data = "smoothcert.sampler.testing:thousand", "smoothcert.sampler.testing:thousand_dataset"
    kw = dict(models=[model], data=data, sigma=0.25, n0=20, n=200, batch_size=110, indices="0:4", seed=3,
              device="cpu", progress=False, log=lambda s: None)
    sample(str(tmp_path / "full.zarr"), **kw)
    sample(str(tmp_path / "top5.zarr"), topk=5, **kw)
    with open_store(tmp_path / "full.zarr") as f, open_store(tmp_path / "top5.zarr") as c:
        assert c.keeps_full_s0 and c.topk == 5 and c.num_classes == 1000
        rows = f.read_block(0, 4, fields=("rows",))["rows"]
        comp = c.read_block(0, 4, fields=("compact", "rows0"))
    assert np.array_equal(comp["rows0"], rows[:, :20])
    cls = ref_class(rows[:, :20])
    soft = dict(alpha=0.01, bound=["bernstein", "hoeffding"])
    got = certify(tmp_path / "top5.zarr", "soft", CertifyOptions(**soft), progress=False)[0]
    for _, row in got.iterrows():
        b = int(row["idx"])  # the data set's indices 0..3 are the store's slots
        L, U, _ = ref_L_U(rows[b, 20:], comp["topk_c"][b, 20:], comp["topk_p"][b, 20:])
        pred, rad, pl, pu = ref_soft(L, U, cls[b], 0.01, 0.25, row["bound"])
        assert row["predict"] == pred and row["radius"] == pytest.approx(rad, rel=1e-8, abs=1e-10)
        assert row["p_lower"] == pytest.approx(pl, rel=1e-10) and row["p_upper"] == pytest.approx(pu, rel=1e-10)
    assert (got["predict"] >= 0).any()
    cdf = dict(alpha=0.01, K=50, threshold=[0.3, 0.5])
    got = certify(tmp_path / "top5.zarr", "cdf", CertifyOptions(**cdf), progress=False)[0]
    for (b, measure, bound), g in got.groupby(["idx", "measure", "bound"], sort=False):
        L, _, in_top = ref_L_values(rows[b, 20:], comp["topk_c"][b, 20:], comp["topk_p"][b, 20:], cls[b], measure)
        lower = ref_cdf_lower(L, bound, measure, 50, 0.01, 0.25)
        assert g["lower0"].to_numpy() == pytest.approx(np.full(len(g), lower(0.0)), rel=1e-12, abs=1e-12)
        assert (g["rows_bounded"] == (~in_top).sum()).all()
    for method, opts in (("soft", soft), ("cdf", cdf)):
        full = certify(tmp_path / "full.zarr", method, CertifyOptions(**opts), progress=False)[0]
        dom = certify(tmp_path / "top5.zarr", method, CertifyOptions(**opts, compact_rule="dominated"),
                      progress=False)[0]
        _never_above(dom, full, RADIUS_TOL if method == "cdf" else 0.0)
