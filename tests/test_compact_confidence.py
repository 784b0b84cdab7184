"""cdf and soft from the top K of each estimation row (docs/methods.md section 9) against the full rows.

The full-row reference is the existing path: a real float16 store certified
by ``certify``. The compact side is ``certifier.compact_confidence`` fed
with ``store.compact.compact_rows`` of the very rows that store holds, plus
the full selection rows, in a ``Block`` built here (no compact store with full
selection rows exists yet; see certifier/compact_confidence.py for the
interface). Independent numpy references below materialise the (n, m) values
section 9 defines and share no code with the certifier.
"""
from __future__ import annotations

import math
import types

import numpy as np
import pytest
from smoothcert.certifier import CertifyOptions, certify, get_method
from smoothcert.certifier import cdf as C
from smoothcert.certifier import compact_bounds as CB
from smoothcert.certifier import soft as S
from smoothcert.certifier.block import Block
from smoothcert.certifier.compact import compact_fields, statement
from smoothcert.store import open_store
from smoothcert.store.compact import compact_rows

RADIUS_TOL = C.TOL  # each cdf radius is within this below its supremum (bisection), on either store


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
    """A Block as a compact store with full selection rows would give: rows0 whole, top-K of every row."""
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


def run_compact(block, method, opts):
    df = get_method(method).compute(block, opts.validate())
    pos = df.pop("_pos").to_numpy()
    df.insert(0, "idx", block.idx[pos])
    return df.reset_index(drop=True)


def ref_class(rows0):
    return np.array([int(np.argmax(r.astype(np.float64).mean(axis=0))) for r in rows0])


def ref_in_topk(block):
    """(N, n) bool per input: is each class in the top K? as a function c -> mask (numpy, from topk_c)."""
    tc = block.compact["topk_c"][:, block.n0:].astype(np.int64)
    return lambda b, c: (tc[b] == c).any(axis=1)


# ---------------------------------------------------------------- the cases
# (seed, m, K, n0, n, kind): K = m, K = 2, many classes, ties, zeros, n above and below the cdf's K
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
CDF_OPTS = [dict(alpha=0.05, K=10_000), dict(alpha=0.05, K=37), dict(alpha=0.001, K=100)]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Per case: (full store path, the rows it holds (float32), labels)."""
    from smoothcert.store.importer import import_npz

    d = tmp_path_factory.mktemp("cc")
    out = {}
    for seed, m, K, n0, n, kind in CASES:
        rng = np.random.default_rng(seed)
        probs = random_probs(rng, N_INPUTS, n0 + n, m, kind)
        labels = rng.integers(0, m, N_INPUTS)
        np.savez(d / f"{seed}.npz", probs=probs.astype(np.float16), labels=labels)
        import_npz(d / f"{seed}.npz", d / f"{seed}.zarr", sigma=SIGMA, n0=n0, dtype="float16")
        with open_store(d / f"{seed}.zarr") as st:
            rows = st.read_block(0, N_INPUTS, fields=("rows",))["rows"]
        out[seed] = (d / f"{seed}.zarr", rows, labels)
    return out


def _case_ids():
    return [f"m{m}-K{K}-n{n}-{kind}" for _, m, K, _, n, kind in CASES]


@pytest.mark.parametrize("case", CASES, ids=_case_ids())
def test_compact_cdf_never_exceeds_the_full_store_and_equals_it_where_the_class_is_always_in_the_top_k(stores, case):
    seed, m, K, n0, _, _ = case
    path, rows, labels = stores[seed]
    block = compact_block(rows, n0, SIGMA, K, labels)
    cls = ref_class(rows[:, :n0])
    in_top = ref_in_topk(block)
    thresholds = [0.05, 0.3, 0.5, 0.8]
    for kw in CDF_OPTS:
        opts = CertifyOptions(measure=["score", "margin"], bound=["cdf", "hoeffding"], threshold=thresholds, **kw)
        full, _ = certify(path, "cdf", opts, progress=False)
        comp = run_compact(block, "cdf", opts)
        assert len(comp) == len(full) == N_INPUTS * 2 * 2 * len(thresholds)
        for col in ("idx", "measure", "bound", "threshold"):
            assert (comp[col].to_numpy() == full[col].to_numpy()).all(), col
        want_rb = np.array([(~in_top(b, cls[b])).sum() for b in range(N_INPUTS)])
        assert (comp["rows_bounded"].to_numpy() == want_rb[comp["idx"].to_numpy()]).all()
        # never larger: lower0 at or below the full one, a certified class only where the full store certifies
        # it, radii at most the bisection precision above (both are within TOL below their suprema, and the
        # compact supremum is at or below the full one)
        fp, cp = full["predict"].to_numpy(), comp["predict"].to_numpy()
        assert ((cp == -1) | (cp == fp)).all()
        assert (comp["lower0"].to_numpy() <= full["lower0"].to_numpy() + 1e-12).all()
        assert (comp["radius"].to_numpy() <= full["radius"].to_numpy() + RADIUS_TOL).all()
        exact = comp["rows_bounded"].to_numpy() == 0
        for col in ("predict", "radius", "lower0"):
            assert (comp[col].to_numpy()[exact] == full[col].to_numpy()[exact]).all(), col
        if K == m:
            assert exact.all()


@pytest.mark.parametrize("case", CASES, ids=_case_ids())
def test_compact_soft_never_exceeds_the_full_store_and_equals_it_when_k_is_m(stores, case):
    seed, m, K, n0, _, _ = case
    path, rows, labels = stores[seed]
    block = compact_block(rows, n0, SIGMA, K, labels)
    for alpha in (0.001, 0.2):
        opts = CertifyOptions(alpha=alpha, bound=["bernstein", "hoeffding"])
        full, _ = certify(path, "soft", opts, progress=False)
        comp = run_compact(block, "soft", opts)
        assert (comp["idx"].to_numpy() == full["idx"].to_numpy()).all()
        assert (comp["bound"].to_numpy() == full["bound"].to_numpy()).all()
        fp, cp = full["predict"].to_numpy(), comp["predict"].to_numpy()
        assert ((cp == -1) | (cp == fp)).all()
        assert (comp["p_lower"].to_numpy() <= full["p_lower"].to_numpy()).all()
        assert (comp["p_upper"].to_numpy() >= full["p_upper"].to_numpy()).all()
        fr = full["radius"].to_numpy()
        assert (comp["radius"].to_numpy() <= fr + 1e-12 * np.maximum(1.0, fr)).all()
        exact = comp["rows_bounded"].to_numpy() == 0
        for col in ("predict", "radius", "p_lower", "p_upper"):
            assert (comp[col].to_numpy()[exact] == full[col].to_numpy()[exact]).all(), col
        if K == m:
            assert exact.all()


def test_the_property_cases_cover_what_they_claim(stores):
    """The random stores do exercise classes outside the top K, ties, zeros, and certificates of both kinds."""
    outside = ties = zeros = 0
    for seed, m, K, n0, n, kind in CASES:
        _, rows, labels = stores[seed]
        block = compact_block(rows, n0, SIGMA, K, labels)
        cls = ref_class(rows[:, :n0])
        in_top = ref_in_topk(block)
        outside += sum(int((~in_top(b, cls[b])).any()) for b in range(N_INPUTS))
        ties += int(any(len(np.unique(r)) < r.size for r in rows[:, n0:].reshape(-1, m)[:50]))
        zeros += int((rows == 0).any())
    assert outside >= 10 and ties >= 3 and zeros >= 3
    seed, m, K, n0, _, _ = CASES[1]
    _, rows, labels = stores[seed]
    comp = run_compact(compact_block(rows, n0, SIGMA, K, labels), "soft", CertifyOptions(alpha=0.2))
    assert ((comp["predict"] >= 0) & (comp["rows_bounded"] > 0)).any()


# ---------------------------------------------------------------- independent references of section 9's values
def ref_lower_values(rows_S, topk_c_S, topk_p_S, c, measure):
    """Section 9's cdf values from materialised rows: exact where c is in the row's top K, else the bound."""
    rows = rows_S.astype(np.float64)
    in_top = (topk_c_S.astype(np.int64) == c).any(axis=1)
    if measure == "score":
        full = rows[:, c]
        bound = np.zeros(len(rows))
    else:
        full = rows[:, c] - np.delete(rows, c, axis=1).max(axis=1)
        bound = -topk_p_S[:, 0].astype(np.float64)
    return np.where(in_top, full, bound), full, in_top


@pytest.mark.parametrize("case", CASES[:6], ids=_case_ids()[:6])
def test_cdf_values_are_the_full_values_in_the_top_k_and_never_above_them(stores, case):
    seed, m, K, n0, _, _ = case
    _, rows, labels = stores[seed]
    block = compact_block(rows, n0, SIGMA, K, labels)
    tp, tc = block.compact["topk_p"], block.compact["topk_c"]
    for c in range(m):
        cls = np.full(N_INPUTS, c)
        for measure in ("score", "margin"):
            z, bounded = CB.measure_lower_values(tp, tc, cls, measure, start=n0)
            for b in range(N_INPUTS):
                want, full, in_top = ref_lower_values(rows[b, n0:], tc[b, n0:], tp[b, n0:], c, measure)
                assert np.array_equal(z[b], want)
                assert (z[b] <= full).all() and bounded[b] == (~in_top).sum()
            # where c is in the top K, the very floats the full-row kernel computes
            zf = C.measure_values(rows, cls, measure, start=n0)
            mask = np.stack([ref_lower_values(rows[b, n0:], tc[b, n0:], tp[b, n0:], c, measure)[2]
                             for b in range(N_INPUTS)])
            assert np.array_equal(z[mask], zf[mask])


def ref_soft_stats(rows_S, topk_p_S, topk_c_S):
    """(mean_lower, mean_upper, var_bound, bounded) per class, materialising L, U and the box (numpy)."""
    x = np.clip(rows_S.astype(np.float64), 0, 1)
    n, m = x.shape
    exact = np.zeros((n, m), bool)
    exact[np.arange(n)[:, None], topk_c_S.astype(np.int64)] = True
    t = np.clip(topk_p_S[:, -1].astype(np.float64), 0, 1)[:, None]
    L = np.where(exact, x, 0.0)
    U = np.where(exact, x, t)
    c0 = np.where(exact, x, t / 2).mean(axis=0)
    box = np.where(exact, (x - c0) ** 2, np.maximum(c0, t - c0) ** 2)
    return L.mean(0), U.mean(0), box.sum(0) / (n - 1), (~exact).sum(0), x


@pytest.mark.parametrize("case", CASES, ids=_case_ids())
def test_soft_statistics_match_a_materialised_reference_and_bound_every_column(stores, case):
    seed, m, K, n0, n, _ = case
    _, rows, labels = stores[seed]
    block = compact_block(rows, n0, SIGMA, K, labels)
    tp, tc = block.compact["topk_p"], block.compact["topk_c"]
    st = CB.soft_stats(tp, tc, m, n0, n0 + n)
    full_mean, full_var = S.mean_var(rows, n0, n0 + n)
    for b in range(N_INPUTS):
        ml, mu, vb, bd, _ = ref_soft_stats(rows[b, n0:], tp[b, n0:], tc[b, n0:])
        assert np.array_equal(st.bounded[b], bd)
        np.testing.assert_allclose(st.mean_lower[b], ml, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(st.mean_upper[b], mu, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(st.var[b], vb, rtol=1e-7, atol=1e-12)
        # conservative as floats: the lower mean at or below the full mean, the upper mean and the variance
        # bound at or above the full kernel's, and above the variance of L and of U too
        assert (st.mean_lower[b] <= full_mean[b]).all() and (st.mean_upper[b] >= full_mean[b]).all()
        assert (st.var[b] >= full_var[b]).all()
        exact = bd == 0
        assert np.array_equal(st.mean_lower[b][exact], full_mean[b][exact])
        assert np.array_equal(st.mean_upper[b][exact], full_mean[b][exact])
        assert np.array_equal(st.var[b][exact], full_var[b][exact])


def test_soft_variance_bound_covers_the_extreme_columns_of_the_box():
    """Every column in the box (exact values fixed, the others anywhere in [0, t_i]) has variance <= var."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        m, n = int(rng.integers(3, 9)), int(rng.integers(3, 40))
        K = int(rng.integers(2, m + 1))
        rows = random_probs(rng, 1, n, m, ["plain", "ties", "zeros"][trial % 3])[0]
        p, c, _ = compact_rows(rows.astype(np.float16), K)
        st = CB.soft_stats(p.astype(np.float32)[None], c[None], m)
        exact = np.zeros((n, m), bool)
        exact[np.arange(n)[:, None], c.astype(np.int64)] = True
        t = p[:, -1].astype(np.float64)
        for j in range(m):
            free = ~exact[:, j]
            for _ in range(20):  # random vertices of the box, where the variance is largest
                col = rows[:, j].astype(np.float64).copy()
                col[free] = np.where(rng.random(free.sum()) < 0.5, 0.0, t[free])
                assert np.var(col, ddof=1) <= st.var[0, j] * (1 + 1e-12) + 1e-300
                assert col.mean() <= st.mean_upper[0, j] + 1e-15


# ---------------------------------------------------------------- why the procedures are adjusted (documented)
def test_bernstein_on_the_replaced_values_could_exceed_the_full_row_bound_but_the_variance_bound_does_not():
    """Section 9 read literally (Bernstein on U) can beat the full rows; the variance bound over the box cannot."""
    n, m, alpha = 100, 10, 0.001
    full = np.r_[np.full(90, 0.3), np.zeros(10)]      # class j: 0.3 where in the top K, 0 where not
    U = np.full(n, 0.3)                                 # ... and bounded by t_i = 0.3 there
    d = alpha / (2 * (m - 1))
    up_full = S.mean_bounds(full.mean(), full.var(ddof=1), n, d, "bernstein")[1]
    up_literal = S.mean_bounds(U.mean(), U.var(ddof=1), n, d, "bernstein")[1]
    assert up_literal < up_full - 0.01                  # a smaller upper bound: a larger certificate
    # the same column as a top-2 store: class 0 fills the rest of the row, class 1 is j (bounded where 0)
    rows = np.zeros((n, 3), np.float32)
    rows[:, 1] = full
    rows[:, 0] = 0.7
    rows[90:, 2] = 0.3
    p, c, _ = compact_rows(rows, 2)
    st = CB.soft_stats(p[None], c[None], 3)
    assert st.bounded[0, 1] == 10
    up_compact = S.mean_bounds(st.mean_upper[0, 1], st.var[0, 1], n, d, "bernstein")[1]
    assert up_compact >= up_full


def test_tie_crediting_cdf_counts_are_not_monotone_and_the_tie_free_count_is():
    """Lowering one value onto a threshold raises the exact-count bound; the tie-free count never rises."""
    ms = C.MEASURES["score"]
    z = np.sort(np.array([0.8, 0.9, 1.0, 0.0, 0.2]))
    z_low = np.sort(np.array([0.8, 0.9, 0.8, 0.0, 0.2]))   # 1.0 lowered to 0.8: pointwise at or below z
    w, u = C.input_terms(z, "cdf", ms, 2, 0.3)
    exact_full = C.lower_bound(0.0, ms.a, w, u, 0.5)[0]
    w, u = C.input_terms(z_low, "cdf", ms, 2, 0.3)
    exact_low = C.lower_bound(0.0, ms.a, w, u, 0.5)[0]
    assert exact_low > exact_full + 0.1
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
        if K >= n:  # gap 1: the two counts coincide
            assert lower(z, True) == pytest.approx(lower(z, False), abs=1e-15)


# ---------------------------------------------------------------- the wiring
def test_compute_functions_take_a_compact_block_with_full_selection_rows_and_add_rows_bounded():
    rng = np.random.default_rng(21)
    N, n0, n, m, K = 5, 20, 200, 7, 3
    rows = random_probs(rng, N, n0 + n, m, "plain")
    labels = rng.integers(0, m, N)
    comp_block = compact_block(rows, n0, SIGMA, K, labels)
    full = full_block(rows, n0, SIGMA, labels)
    for method, opts in (("cdf", CertifyOptions(alpha=0.1)), ("soft", CertifyOptions(alpha=0.1))):
        a = get_method(method).compute(full, opts)
        b = get_method(method).compute(comp_block, opts)
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
        got = get_method("soft").compute(comp, CertifyOptions(alpha=0.3))
        ful = get_method("soft").compute(full, CertifyOptions(alpha=0.3))
        certified = got["predict"].to_numpy() >= 0
        assert (got["predict"].to_numpy()[certified] == want[got["_pos"].to_numpy()[certified]]).all()
        assert ((got["predict"] == -1) | (got["predict"] == ful["predict"])).all()
        z = get_method("cdf").compute(comp, CertifyOptions(alpha=0.3, threshold=[0.01]))
        zs = z[z["measure"] == "score"]
        assert (zs["predict"].to_numpy()[zs["predict"].to_numpy() >= 0] ==
                want[zs["_pos"].to_numpy()[zs["predict"].to_numpy() >= 0]]).all()


def test_a_compact_block_without_selection_rows_is_refused():
    rng = np.random.default_rng(1)
    block = compact_block(random_probs(rng, 2, 60, 4, "plain"), 10, SIGMA, 2, [0, 1])
    del block.compact["rows0"]
    for method in ("cdf", "soft"):
        with pytest.raises(ValueError, match=r"need its full selection rows"):
            get_method(method).compute(block, CertifyOptions())


def test_compact_fields_admit_cdf_and_soft_only_when_the_store_keeps_its_selection_rows():
    """The store-side contract is duck-typed: ``keeps_full_s0`` true and field ``rows0`` readable."""
    keeps = types.SimpleNamespace(location="s.zarr", topk=5, keeps_full_s0=True)
    plain = types.SimpleNamespace(location="s.zarr", topk=5)
    for name in ("cdf", "soft"):
        method = get_method(name)
        assert compact_fields(method, keeps, method.fields) == ["argmax", "compact", "rows0"]
        assert statement(method, keeps)["certificate"] == "bounded"
        with pytest.raises(ValueError, match=rf"--method {name} needs full softmax rows.*compact \(top-5\)"):
            compact_fields(method, plain, method.fields)
    assert compact_fields(get_method("cohen"), keeps, ("argmax",)) == ["argmax"]
    assert statement(get_method("two-step"), keeps)["certificate"] == "exact"


def test_soft_statistics_at_1000_classes_match_a_column_by_column_reference():
    """m = 1,000, n = 20,000, K = 5 (no (n, m) array is built by soft_stats; the reference builds one column)."""
    rng = np.random.default_rng(0)
    n, m, K = 20_000, 1000, 5
    others = np.delete(np.arange(m), 7)
    tc = np.stack([np.r_[7, rng.choice(others, K - 1, replace=False)] if i < n // 2  # class 7 leads in half
                   else rng.choice(m, K, replace=False) for i in range(n)]).astype(np.uint16)
    tp = np.sort(rng.dirichlet(np.ones(K), size=n) * 0.9, axis=1)[:, ::-1].astype(np.float32)
    st = CB.soft_stats(tp[None], tc[None], m)
    t = tp[:, -1].astype(np.float64)
    for j in (7, int(tc[0, 1]), 999, int(np.argmax(st.mean_upper[0]))):
        hit = tc.astype(np.int64) == j
        exact = hit.any(axis=1)
        x = np.where(exact, (tp * hit).sum(axis=1).astype(np.float64), 0.0)
        U = np.where(exact, x, t)
        c0 = np.where(exact, x, t / 2).mean()
        vb = np.where(exact, (x - c0) ** 2, np.maximum(c0, t - c0) ** 2).sum() / (n - 1)
        assert st.bounded[0, j] == (~exact).sum()
        assert st.mean_lower[0, j] == pytest.approx(x.mean(), rel=1e-12)
        assert st.mean_upper[0, j] == pytest.approx(U.mean(), rel=1e-9)
        assert st.var[0, j] == pytest.approx(vb, rel=1e-7)
