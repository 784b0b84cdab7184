"""R_CC, R_NCL and ncl-strict against an independent computation written here.

The reference below follows docs/methods.md section 3 line by line with
plain Python loops and scipy.stats (beta.ppf, binomtest, norm, brentq); it
shares no code with certifier/. Stores are real stores on disk built through
the import path; rows are designed so that each edge case of section 3
occurs: V on top (abstain), V as runner-up, no runner-up, zero probabilities
(0 ln 0), ties, one observed class.
"""
import math

import numpy as np
import pytest
from scipy import optimize, stats

from smoothcert.certifier import CertifyOptions, certify

FUNCS = ("entropy", "confidence", "margin")


# ---------------------------------------------------------------- reference
def ref_u(p, name):
    p = [float(x) for x in p]
    if name == "entropy":
        h = 0.0
        for x in p:
            if x > 0:
                h -= x * math.log(x)
        return h
    if name == "confidence":
        return -max(p)
    s = sorted(p)
    return -(s[-1] - s[-2])


def ref_counts(rows, m, theta, name):
    """Extended counts (m + 1) of the rows: hard label (first max) if u < theta, else V = m."""
    out = [0] * (m + 1)
    for p in rows:
        lab = max(range(m), key=lambda c: (p[c], -c))
        out[lab if ref_u(p, name) < theta else m] += 1
    return out


def ref_cp_lower(k, n, a):
    return 0.0 if k == 0 else stats.beta.ppf(a, k, n - k + 1)


def ref_cp_upper(k, n, a):
    return 1.0 if k == n else stats.beta.ppf(1 - a, k + 1, n - k)


def ref_binom(k, n, alt):
    return 1.0 if n == 0 else stats.binomtest(int(k), int(n), 0.5, alternative=alt).pvalue


def ref_top(counts, k):
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    order = order + [-1] * max(0, k - len(order))
    return order[:k], [counts[c] if c >= 0 else 0 for c in order[:k]]


def ref_radius(pA, pB, sigma):
    r = sigma / 2 * (stats.norm.ppf(pA) - stats.norm.ppf(pB))
    return -math.inf if math.isnan(r) else r


def ref_two_step_bounds(kA, kB, has_b, n, a):
    if has_b and kA + kB != n:
        return ref_cp_lower(kA, n, a / 2), ref_cp_upper(kB, n, a / 2)
    pA = ref_cp_lower(kA, n, a)
    return pA, 1 - pA


def ref_r2(pAV, pB, sigma):
    zAV, zB = stats.norm.ppf(pAV), stats.norm.ppf(pB)

    def f(r):
        return stats.norm.cdf(zAV - r / sigma) / 2 - stats.norm.cdf(zB + r / sigma)

    if not (math.isfinite(zAV) and math.isfinite(zB)) or f(0) < 0:
        return -math.inf
    hi = 1.0
    while f(hi) >= 0:
        hi *= 2
    return optimize.brentq(f, 0.0, hi, xtol=1e-13)


def ref_certificate(c0, c, n, sigma, a, alt, g):
    """(predict, radius, runner_up, top_class, pA, pB) of guarantee g on extended counts (V last)."""
    m = len(c0) - 1
    (t0, t1, _), (nA, nB, nC) = ref_top(c0, 3)
    cA = t0 if ref_binom(nA, nA + nB, alt) <= a else -1
    if g == "cc":
        runner = t1 if ref_binom(nB, nB + nC, alt) <= a else -1
    elif t0 == m:
        runner = -1
    else:
        others = sorted([j for j in range(m) if j != t0], key=lambda j: (-c0[j], j))
        b, cc_ = c0[others[0]], (c0[others[1]] if len(others) > 1 else 0)
        runner = others[0] if ref_binom(b, b + cc_, alt) <= a else -1
    if cA < 0 or cA == m:
        return -1, 0.0, runner, cA, math.nan, math.nan
    kB = c[runner] if runner >= 0 else 0
    if g == "cc":
        pA, pB = ref_two_step_bounds(c[cA], kB, runner >= 0, n, a)
        r = ref_radius(pA, pB, sigma)
    elif g == "ncl":
        pA, pB = ref_two_step_bounds(c[cA] + c[m], kB, runner >= 0, n, a)
        r = ref_radius(pA, pB, sigma)
    else:
        a3 = a / 3
        pA = ref_cp_lower(c[cA], n, a3)
        pAV = ref_cp_lower(c[cA] + c[m], n, a3)
        pB = ref_cp_upper(kB, n, a3) if runner >= 0 else 1 - pAV
        r = max(ref_radius(pA, pB, sigma), ref_r2(pAV, pB, sigma))
    if not r > 0:
        return -1, 0.0, runner, cA, pA, pB
    return cA, r, runner, cA, pA, pB


def ref_counts_np(rows, m, theta, name):
    """``ref_counts`` by brute force in numpy (for 1,000 classes): every class counted, V last."""
    p = np.asarray(rows, dtype=np.float64)
    if name == "entropy":
        u = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    elif name == "confidence":
        u = -p.max(axis=1)
    else:
        s = np.sort(p, axis=1)
        u = -(s[:, -1] - s[:, -2])
    conf = u < theta
    return np.bincount(p.argmax(axis=1)[conf], minlength=m).tolist() + [int((~conf).sum())]


def check_against_reference(table, probs, labels, n0, sigma, thetas_by_f, guarantees, alpha, alt="two-sided",
                            joint=False, counts=ref_counts):
    """Every row of ``table`` equals the reference, in the documented row order."""
    a = alpha / 2 if joint else alpha
    N, R, m = probs.shape
    expect = []
    for i in range(N):
        for f, thetas in thetas_by_f.items():
            for th in thetas:
                c0 = counts(probs[i, :n0], m, th, f)
                c = counts(probs[i, n0:], m, th, f)
                for g in guarantees:
                    expect.append((i, f, th, g, c[m]) + ref_certificate(c0, c, R - n0, sigma, a, alt, g))
    assert len(table) == len(expect)
    for k, (i, f, th, g, nv, p, r, runner, top, pA, pB) in enumerate(expect):
        row = table.iloc[k]
        where = (i, f, th, g)
        assert (row["idx"], row["uncertainty"], row["guarantee"]) == (i, f, g), where
        assert row["theta"] == th, where
        assert row["label"] == labels[i]
        assert row["predict"] == p, where
        assert row["runner_up"] == runner, where
        assert row["top_class"] == top, where
        assert row["n_uncertain"] == nv, where
        assert row["num_classes"] == m
        assert row["correct"] == int(p == labels[i])
        assert row["radius"] == pytest.approx(r, rel=1e-9, abs=2e-9), where
        for col, v in (("p_lower", pA), ("p_upper", pB)):
            if math.isnan(v):
                assert math.isnan(row[col]), (where, col)
            else:
                assert row[col] == pytest.approx(v, rel=1e-9, abs=1e-12), (where, col)


def run(store, **kw):
    table, meta = certify(store, "uncertainty", CertifyOptions(**kw), progress=False)
    return table, meta


# ---------------------------------------------------------------- row recipes
def make_row(label, kind, m):
    """conf: 0.97 on the label; unc: 0.40 / 0.35 (high uncertainty, same hard label); hot: exact one-hot
    (zeros: 0 ln 0); tie: 0.45 / 0.45 with the next class (hard label: the lower index, margin 0)."""
    p = np.zeros(m)
    nxt = (label + 1) % m
    if kind == "conf":
        p[:] = 0.03 / (m - 1)
        p[label] = 0.97
    elif kind == "unc":
        p[:] = 0.25 / max(m - 2, 1) if m > 2 else 0.0
        p[label], p[nxt] = 0.40, 0.35 if m > 2 else 0.60
        if m == 2:
            p[label], p[nxt] = 0.55, 0.45
    elif kind == "hot":
        p[label] = 1.0
    elif kind == "tie":
        p[:] = 0.10 / max(m - 2, 1) if m > 2 else 0.0
        p[label] = p[nxt] = 0.45 if m > 2 else 0.5
    return p


def recipe_rows(parts, m, rng):
    rows = [make_row(lab, kind, m) for lab, kind, cnt in parts for _ in range(cnt)]
    rows = np.array(rows, dtype=np.float32)
    return rows[rng.permutation(len(rows))]


# Thresholds that separate conf/hot rows from unc/tie rows, plus boundary values that hit u exactly
# (entropy of a one-hot row is exactly 0; confidence and margin of a one-hot row are exactly -1).
EDGE_THETAS = {"entropy": [0.0, 0.5, math.inf], "confidence": [-1.0, -0.6, math.inf], "margin": [-1.0, -0.3, 0.0, math.inf]}

# (S0 parts, S parts) with n0 = 100, n = 1000, m = 4; a part is (hard label, kind, rows)
EDGE_CASES = [
    ([(0, "unc", 70), (0, "conf", 30)], [(0, "unc", 700), (0, "conf", 300)]),                    # V on top: abstain
    ([(1, "conf", 70), (2, "unc", 30)], [(1, "conf", 700), (2, "unc", 300)]),                    # V runner-up, kA + kB = n
    ([(1, "conf", 65), (2, "unc", 30), (3, "conf", 5)], [(1, "conf", 650), (2, "unc", 300), (3, "conf", 50)]),  # V runner-up, split
    ([(2, "conf", 100)], [(2, "conf", 1000)]),                                                    # one class, no runner-up
    ([(3, "hot", 90), (0, "unc", 10)], [(3, "hot", 900), (0, "unc", 100)]),                      # zeros: 0 ln 0
    ([(1, "conf", 50), (0, "conf", 50)], [(1, "conf", 500), (0, "conf", 500)]),                  # tie on top
    ([(0, "unc", 50), (2, "conf", 50)], [(0, "unc", 500), (2, "conf", 500)]),                    # tie V vs real: V loses
    ([(0, "conf", 80), (1, "conf", 10), (2, "unc", 10)], [(0, "conf", 800), (1, "conf", 100), (2, "unc", 100)]),  # runner-up tie
    ([(0, "tie", 60), (2, "conf", 40)], [(0, "tie", 600), (2, "conf", 400)]),                    # tied rows: margin 0
    ([(0, "conf", 70), (0, "unc", 20), (1, "conf", 10)], [(0, "conf", 450), (0, "unc", 450), (1, "conf", 100)]),  # ncl-strict R2 > R1
    ([(0, "conf", 60), (3, "unc", 32), (1, "conf", 8)], [(0, "conf", 600), (3, "unc", 320), (1, "conf", 80)]),  # cc and ncl runner-ups differ
]


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory):
    from smoothcert.store.importer import import_npz

    rng = np.random.default_rng(3)
    m = 4
    probs = np.stack([np.concatenate([recipe_rows(s0, m, rng), recipe_rows(s, m, rng)]) for s0, s in EDGE_CASES])
    labels = np.array([0, 1, 1, 2, 3, 1, 2, 0, 0, 0, 0])
    d = tmp_path_factory.mktemp("edge")
    np.savez(d / "edge.npz", probs=probs, labels=labels)
    import_npz(d / "edge.npz", d / "edge.zarr", sigma=0.5, n0=100)
    return d / "edge.zarr", probs, labels


def test_edge_cases_match_reference(edge_store):
    store, probs, labels = edge_store
    by_f = {f: t[:-1] for f, t in EDGE_THETAS.items()}
    for alpha in (0.001, 0.05):
        table, meta = run(store, uncertainty=list(FUNCS), theta=[math.inf], theta_by_uncertainty=by_f, alpha=alpha)
        expect_thetas = {f: [math.inf] + t for f, t in by_f.items()}
        check_against_reference(table, probs, labels, 100, 0.5, expect_thetas, ["cc", "ncl", "ncl-strict"], alpha)
        assert meta["confidence"] == pytest.approx(1 - 2 * alpha)


def _rows(table, i, f, th, g):
    t = table[(table["idx"] == i) & (table["uncertainty"] == f) & (table["theta"] == th) & (table["guarantee"] == g)]
    assert len(t) == 1
    return t.iloc[0]


def test_edge_cases_behave_as_section_3_says(edge_store):
    store, probs, labels = edge_store
    table, _ = run(store, uncertainty=["entropy", "margin"], theta=[0.0, 0.5, -0.3, math.inf], alpha=0.05)
    m = 4
    # V on top: cc and ncl abstain, PREDICT's class is V
    for g in ("cc", "ncl", "ncl-strict"):
        r = _rows(table, 0, "entropy", 0.5, g)
        assert r["predict"] == -1 and r["radius"] == 0.0 and r["top_class"] == m
    assert _rows(table, 0, "entropy", math.inf, "cc")["predict"] == 0  # plain labels: certified
    # V as runner-up (cc), none among real classes (ncl)
    assert _rows(table, 1, "entropy", 0.5, "cc")["runner_up"] == m
    assert _rows(table, 1, "entropy", 0.5, "cc")["predict"] == 1
    assert _rows(table, 1, "entropy", 0.5, "ncl")["runner_up"] == -1
    # one observed class: no runner-up; everything confident at 0.5
    r = _rows(table, 3, "entropy", 0.5, "cc")
    assert r["runner_up"] == -1 and r["n_uncertain"] == 0 and r["predict"] == 2
    # one-hot rows: entropy 0 (0 ln 0 = 0), confident at 0.5, uncertain at theta = 0 (u < theta is strict)
    assert _rows(table, 4, "entropy", 0.5, "cc")["n_uncertain"] == 100
    assert _rows(table, 4, "entropy", 0.0, "cc")["n_uncertain"] == 1000
    assert _rows(table, 4, "entropy", 0.5, "cc")["predict"] == 3
    # tie on top between real classes: lowest index, test fails: abstain
    assert _rows(table, 5, "entropy", 0.5, "cc")["top_class"] == -1
    # tied rows have margin 0: uncertain at -0.3, and the hard label is the lower index
    assert _rows(table, 8, "margin", -0.3, "cc")["n_uncertain"] == 600
    # here cA alone has less than half of S: cc abstains, ncl-strict certifies through R2 (> R1), below ncl
    cc, ncl, st = (_rows(table, 9, "entropy", 0.5, g) for g in ("cc", "ncl", "ncl-strict"))
    r1 = 0.5 / 2 * (stats.norm.ppf(st["p_lower"]) - stats.norm.ppf(st["p_upper"]))
    assert cc["predict"] == -1 and 0 < r1 + 0.05 < st["radius"] < ncl["radius"]
    # cc's runner-up is V, ncl's a real class
    assert _rows(table, 10, "entropy", 0.5, "cc")["runner_up"] == m
    assert _rows(table, 10, "entropy", 0.5, "ncl")["runner_up"] == 1


# ---------------------------------------------------------------- random stores
def random_probs(rng, N, R, m):
    probs = np.empty((N, R, m), np.float32)
    labels = rng.integers(0, m, N)
    for i in range(N):
        conc = rng.choice([0.2, 0.6, 1.5])
        logits = rng.standard_normal((R, m)) * 1.5
        logits[:, labels[i]] += rng.uniform(0, 4)
        logits[:, (labels[i] + 1) % m] += rng.uniform(0, 2)
        p = np.exp(logits / conc)
        p[rng.random((R, m)) < 0.05] = 0.0  # exact zeros: 0 ln 0
        p[np.arange(R), p.argmax(1)] += 1e-6
        probs[i] = p / p.sum(1, keepdims=True)
    return probs, labels


def midpoint_thetas(probs, name, q):
    """Thresholds strictly between observed u values (so float rounding cannot decide a row)."""
    u = np.unique([ref_u(p, name) for p in probs.reshape(-1, probs.shape[-1])[::7]])
    out = []
    for x in np.quantile(u, q):
        j = min(np.searchsorted(u, x), len(u) - 1)
        lo = u[j - 1] if j > 0 else u[0] - 1e-3
        out.append(float((lo + u[j]) / 2))
    return out


@pytest.fixture(scope="module")
def random_store(tmp_path_factory):
    from smoothcert.store.importer import import_npz

    rng = np.random.default_rng(7)
    probs, labels = random_probs(rng, 10, 60 + 300, 5)
    d = tmp_path_factory.mktemp("rand")
    np.savez(d / "r.npz", probs=probs, labels=labels)
    import_npz(d / "r.npz", d / "r.zarr", sigma=0.25, n0=60)
    return d / "r.zarr", probs, labels


@pytest.mark.parametrize("alt,joint", [("two-sided", False), ("greater", True)])
def test_random_store_matches_reference(random_store, alt, joint):
    store, probs, labels = random_store
    by_f = {f: midpoint_thetas(probs, f, [0.3, 0.7, 0.9]) for f in FUNCS}
    table, meta = run(store, uncertainty=list(FUNCS), theta_by_uncertainty=by_f, alpha=0.05, binom_test=alt,
                      joint_alpha=joint)
    check_against_reference(table, probs, labels, 60, 0.25, by_f, ["cc", "ncl", "ncl-strict"], 0.05, alt, joint)
    assert meta["confidence"] == pytest.approx(1 - 0.05 if joint else 1 - 0.1)


@pytest.mark.parametrize("alpha,alt", [(0.001, "two-sided"), (0.05, "two-sided"), (0.05, "greater")])
def test_theta_inf_equals_two_step(random_store, alpha, alt):
    store, _, _ = random_store
    ref, _ = certify(store, "two-step", CertifyOptions(alpha=alpha, binom_test=alt), progress=False)
    table, _ = run(store, uncertainty=list(FUNCS), guarantee=["cc", "ncl"], alpha=alpha, binom_test=alt)  # default theta: inf
    assert set(table["theta"]) == {math.inf}
    for f in FUNCS:
        for g in ("cc", "ncl"):
            t = table[(table["uncertainty"] == f) & (table["guarantee"] == g)].reset_index(drop=True)
            for col in ("idx", "label", "predict", "runner_up", "correct"):
                np.testing.assert_array_equal(t[col].to_numpy(), ref[col].to_numpy(), err_msg=f"{f} {g} {col}")
            for col in ("radius", "p_lower", "p_upper"):  # bit for bit
                np.testing.assert_array_equal(t[col].to_numpy(), ref[col].to_numpy(), err_msg=f"{f} {g} {col}")


def test_theta_inf_equals_two_step_edge(edge_store):
    store, _, _ = edge_store
    for alpha in (0.001, 0.05):
        ref, _ = certify(store, "two-step", CertifyOptions(alpha=alpha), progress=False)
        table, _ = run(store, uncertainty=["entropy"], guarantee=["cc", "ncl"], alpha=alpha)
        for g in ("cc", "ncl"):
            t = table[table["guarantee"] == g].reset_index(drop=True)
            for col in ("predict", "runner_up", "radius", "p_lower", "p_upper"):
                np.testing.assert_array_equal(t[col].to_numpy(), ref[col].to_numpy(), err_msg=f"{g} {col}")


def test_sweep_equals_one_theta_at_a_time(random_store, monkeypatch):
    """A sweep reads the store as often as one theta and gives the same rows as one run per theta."""
    from smoothcert.store.api import SampleStore

    store, probs, _ = random_store
    thetas = midpoint_thetas(probs, "confidence", np.linspace(0.05, 0.95, 7)) + [math.inf]
    calls = {"n": 0}
    orig = SampleStore.read_block

    def counting(self, *a, **k):
        calls["n"] += 1
        return orig(self, *a, **k)

    monkeypatch.setattr(SampleStore, "read_block", counting)
    sweep, _ = run(store, uncertainty=["confidence"], theta=thetas, alpha=0.05)
    n_sweep = calls["n"]
    calls["n"] = 0
    single = [run(store, uncertainty=["confidence"], theta=[t], alpha=0.05)[0] for t in thetas[:1]]
    assert n_sweep == calls["n"] > 0
    for t in thetas:
        one, _ = run(store, uncertainty=["confidence"], theta=[t], alpha=0.05)
        part = sweep[sweep["theta"] == t].reset_index(drop=True)
        for col in ("idx", "guarantee", "predict", "radius", "runner_up", "p_lower", "p_upper", "n_uncertain"):
            np.testing.assert_array_equal(part[col].to_numpy(), one[col].to_numpy(), err_msg=f"{t} {col}")
    assert len(single[0]) == len(probs) * 3


def test_row_order_and_duplicates(random_store):
    store, _, _ = random_store
    table, _ = run(store, uncertainty=["margin", "entropy"], theta=[-0.2, math.inf, -0.2, 0.3], guarantee=["ncl", "cc"])
    first = table[table["idx"] == 0]
    assert list(zip(first["uncertainty"], first["theta"], first["guarantee"])) == [
        (f, t, g) for f in ("margin", "entropy") for t in (-0.2, math.inf, 0.3) for g in ("ncl", "cc")]


def test_bad_options_fail_before_work(random_store):
    store, _, _ = random_store
    with pytest.raises(ValueError, match="theta"):
        run(store, theta=[math.nan])
    with pytest.raises(ValueError, match="uncertainty"):
        run(store, uncertainty=["variance"])
    with pytest.raises(ValueError, match="guarantee"):
        run(store, guarantee=["strict"])


# ---------------------------------------------------------------- ncl-strict R2 and the counterexample
def test_r2_bisection_matches_brentq():
    from smoothcert.certifier.kernels_uncertainty import ncl_strict_r2

    rng = np.random.default_rng(5)
    pAV = rng.uniform(0.05, 0.999, 300)
    pB = rng.uniform(0.001, 0.6, 300)
    sigma = 0.37
    z = stats.norm.ppf
    got = ncl_strict_r2(z(pAV), z(pB), 0.0, sigma)
    for i in range(300):
        ref = ref_r2(pAV[i], pB[i], sigma)
        if ref == -math.inf:
            assert got[i] == -math.inf
        else:
            assert ref - 1e-9 <= got[i] <= ref + 1e-12


def test_spec_counterexample_numbers():
    """P = (cA .5, V .3, cB .2): R_NCL = 0.84 sigma, yet the strict radius is smaller (section 3)."""
    from smoothcert.certifier.kernels_uncertainty import ncl_strict_r2

    z = stats.norm.ppf
    r_ncl = 0.5 * (z(0.8) - z(0.2))
    assert r_ncl == pytest.approx(0.8416, abs=1e-4)
    r1 = 0.5 * (z(0.5) - z(0.2))
    r2 = float(ncl_strict_r2(np.array([z(0.8)]), np.array([z(0.2)]), max(r1, 0.0), 1.0)[0])
    assert max(r1, r2) < 0.8 < r_ncl
    # the exact worst case: at 0.8 sigma a half-space can leave cB with more mass than cA and V each
    assert stats.norm.cdf(z(0.2) + 0.8) > stats.norm.cdf(z(0.8) - 0.8) / 2


@pytest.mark.parametrize("kind", ["grid", "random", "clustered"])
def test_extended_counts_many_thetas(random_store, kind):
    """Hundreds of thresholds (the bucketed search) and infinities count exactly as a direct comparison."""
    from smoothcert.certifier.uncertainty import extended_counts

    _, probs, _ = random_store
    rng = np.random.default_rng(1)
    rows = probs[:3, :80]
    labels = rows.argmax(-1)
    for f in FUNCS:
        u = np.array([[ref_u(p, f) for p in r] for r in rows])
        if kind == "grid":
            th = np.linspace(u.min(), u.max(), 300)
        elif kind == "random":
            th = rng.uniform(u.min() - 0.1, u.max() + 0.1, 257)
        else:  # many thresholds in a narrow range, a few far away: the binary-search fallback
            th = np.concatenate([np.full(50, np.median(u)) + rng.normal(0, 1e-6, 50), [u.min() - 5, u.max() + 5]])
        th = np.concatenate([th, u.ravel()[:20], [-math.inf, math.inf]])  # thresholds equal to u values: V (u < theta)
        rng.shuffle(th)
        got = extended_counts(labels, rows, 0, rows.shape[1], [f], th)[:, 0]
        for t, theta in enumerate(th):
            for i in range(3):
                conf = u[i] < theta
                exp = np.bincount(labels[i][conf], minlength=rows.shape[2]).tolist() + [int((~conf).sum())]
                assert got[i, t].tolist() == exp, (f, kind, theta)


def test_theta_grid_and_list_combine():
    from smoothcert.certifier.options import parse_float_list

    assert parse_float_list("-1:1:3,inf", "theta") == [-1.0, 0.0, 1.0, math.inf]
    assert parse_float_list("0.5,0:1:2", "theta") == [0.5, 0.0, 1.0]


def test_memoised_bounds_equal_the_plain_ones():
    """The Clopper-Pearson memo (dense per (n, level), or per call for huge n) returns exactly the unmemoised bounds."""
    from smoothcert.stats.bounds import cp_lower, cp_upper
    from smoothcert.certifier.uncertainty import cp_bound

    for n in (1000, 50_000_000):
        k = np.array([0, 1, 7, 7, n // 2, n - 1, n])
        np.testing.assert_array_equal(cp_bound("lower", k, n, 0.0005), cp_lower(k, np.full(k.shape, n), 0.0005))
        np.testing.assert_array_equal(cp_bound("upper", k, n, 0.0005), cp_upper(k, np.full(k.shape, n), 0.0005))


# ---------------------------------------------------------------- 1,000 classes: only the classes read are counted
@pytest.fixture(scope="module")
def thousand_store(tmp_path_factory):
    """3 inputs x (40 + 200) rows x 1,000 classes, weakly peaked (dozens of classes in S0), full and top-5."""
    from smoothcert.store.importer import import_npz

    rng = np.random.default_rng(11)
    N, n0, n, m = 3, 40, 200, 1000
    labels = np.array([5, 500, 999])
    probs = np.empty((N, n0 + n, m), np.float32)
    for i in range(N):
        logits = rng.standard_normal((n0 + n, m)) * 1.5
        logits[:, labels[i]] += [6.0, 4.5, 5.0][i]
        logits[:, (labels[i] + 1) % m] += 3.0
        p = np.exp(logits)
        probs[i] = p / p.sum(1, keepdims=True)
    d = tmp_path_factory.mktemp("thousand")
    np.savez(d / "t.npz", probs=probs, labels=labels)
    import_npz(d / "t.npz", d / "full.zarr", sigma=0.5, n0=n0)
    import_npz(d / "t.npz", d / "top5.zarr", sigma=0.5, n0=n0, topk=5)
    return d, probs, labels


def test_thousand_classes_match_a_brute_force_count(thousand_store):
    """On 1,000 classes every certificate equals the reference computed from every class's count (numpy), on the
    full store and on its top-5 compact store; the selection rows hold dozens of classes."""
    d, probs, labels = thousand_store
    assert min(len(np.unique(probs[i, :40].argmax(1))) for i in range(3)) >= 10
    by_f = {f: midpoint_thetas(probs, f, [0.1, 0.5, 0.8, 0.95]) + [math.inf] for f in FUNCS}
    for store in ("full.zarr", "top5.zarr"):
        table, _ = run(d / store, uncertainty=list(FUNCS), theta_by_uncertainty=by_f, alpha=0.05)
        check_against_reference(table, probs, labels, 40, 0.5, by_f, ["cc", "ncl", "ncl-strict"], 0.05,
                                counts=ref_counts_np)
    assert (table["predict"] >= 0).any() and (table["runner_up"] >= 0).any() and (table["top_class"] == 1000).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranked_counts_equal_ranking_every_class(seed):
    """``ranked_counts_of`` (the selection ranks and the few counts on S) equals ranking the full extended counts
    in numpy, ties included (lower class first, V = m last), with thresholds equal to u values."""
    from types import SimpleNamespace

    from smoothcert.certifier.uncertainty import extended_counts, ranked_counts_of

    rng = np.random.default_rng(seed)
    B, n0, n, m = 4, 30, 120, 40
    levels = np.array([0.3, 0.5, 0.7, 0.9, 0.99], np.float32)  # few distinct u values: ties of rows and thetas
    rows = np.zeros((B, n0 + n, m), np.float32)
    lab = rng.choice([0, 1, 2, 7, 39], size=(B, n0 + n), p=[0.3, 0.3, 0.2, 0.1, 0.1])
    top = rng.choice(levels, size=(B, n0 + n))
    rows[...] = ((1 - top) / (m - 1))[..., None]
    np.put_along_axis(rows, lab[..., None], top[..., None], axis=-1)
    thetas = [np.concatenate([[-np.inf, np.inf], -levels.astype(np.float64), rng.uniform(-1, 0, 20)])] * 3
    block = SimpleNamespace(argmax=rows.argmax(-1), rows=rows, m=m, compact=None)
    got = ranked_counts_of(block, list(FUNCS), thetas, (0, n0), (n0, n0 + n))
    c0 = extended_counts(block.argmax, rows, 0, n0, list(FUNCS), thetas[0]).reshape(-1, m + 1)
    c = extended_counts(block.argmax, rows, n0, n0 + n, list(FUNCS), thetas[0]).reshape(-1, m + 1)
    for k in range(len(c0)):
        order = sorted(range(m + 1), key=lambda j: (-c0[k, j], j))
        top3 = [j if c0[k, j] > 0 else -1 for j in order[:3]]
        assert [got["top"][k], got["second"][k]] == top3[:2], k
        assert [got["n_top"][k], got["n_second"][k], got["n_third"][k]] == [c0[k, j] for j in order[:3]], k
        if 0 <= top3[0] < m:
            others = [j for j in order if j not in (top3[0], m)]
            assert got["ncl_runner"][k] == (others[0] if c0[k, others[0]] > 0 else -1), k
            assert [got["n_ncl_runner"][k], got["n_ncl_third"][k]] == [c0[k, others[0]], c0[k, others[1]]], k
        else:
            assert (got["ncl_runner"][k], got["n_ncl_runner"][k], got["n_ncl_third"][k]) == (-1, 0, 0), k
        for name, cls in (("k_top", got["top"][k]), ("k_second", got["second"][k]),
                          ("k_ncl_runner", got["ncl_runner"][k])):
            assert got[name][k] == (c[k, cls] if cls >= 0 else 0), (k, name)
        assert got["k_v"][k] == c[k, m], k
