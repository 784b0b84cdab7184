"""cdf (certified confidence, docs/methods.md section 4) against independent computations written here.

The reference functions below use plain Python, numpy and scipy.stats only;
they share no code with certifier/. ``ref_code_lower`` is the formula of the
paper's reference code (q_i = (K - i)/K - eps, scipy's norm with scale=sigma),
``ref_spec_lower`` the spec's exact-count formula.
"""
import math

import numpy as np
import pytest
from scipy import optimize, stats

from smoothcert.certifier import CertifyOptions, certify

RANGE = {"score": (0.0, 1.0), "margin": (-1.0, 1.0)}


# ---------------------------------------------------------------- references
def ref_eps(n, alpha):
    return math.sqrt(math.log(1 / alpha) / (2 * n))


def ref_measure(rows, c, measure):
    rows = np.asarray(rows, dtype=np.float64)
    if measure == "score":
        return rows[:, c].copy()
    others = np.delete(rows, c, axis=1)
    return rows[:, c] - others.max(axis=1)


def ref_spec_terms(z, K, alpha):
    """s_i = z_(i*gap) for i*gap < n; q_i = max(#{z >= s_i}/n - eps, 0), counted by brute force."""
    zs = np.sort(np.asarray(z, dtype=np.float64))
    n = zs.size
    K = min(K, n)
    gap = math.ceil(n / K)
    s = np.array([zs[i * gap] for i in range(n) if i * gap < n])
    counts = (zs[None, :] >= s[:, None]).sum(axis=1)
    return s, np.maximum(counts / n - ref_eps(n, alpha), 0.0)


def ref_spec_lower(z, K, alpha, a, sigma, R, _cache={}):  # noqa: B006  (a deliberate memo across calls)
    key = (id(z), K, alpha)
    if key not in _cache or _cache[key][0] is not z:
        _cache.clear()
        _cache[key] = (z, ref_spec_terms(z, K, alpha))
    s, q = _cache[key][1]
    widths = np.diff(np.concatenate([[a], s]))
    return a + float(np.sum(widths * stats.norm.cdf(stats.norm.ppf(q) - R / sigma)))


def ref_code_lower(z, K, alpha, a, sigma, R):
    """The reference code's formula: thresholds every gap-th sorted score, q_i = (T - i)/T - eps."""
    zs = np.sort(np.asarray(z, dtype=np.float64))
    n = zs.size
    eps = math.sqrt(math.log(1 / alpha) / (2 * n))
    thr = zs[:: math.ceil(n / K)]
    T = thr.size
    out = a
    for i in range(T):
        prob = max((T - i) / T - eps, 0)
        phi_inv = stats.norm.ppf(prob, scale=sigma)
        prob = stats.norm.cdf(phi_inv, loc=R, scale=sigma)
        out += (thr[i] - (a if i == 0 else thr[i - 1])) * prob
    return out


def ref_hoeffding_lower(z, alpha, a, b, sigma, R):
    n = len(z)
    e = float(np.mean(z)) - (b - a) * ref_eps(n, alpha)
    q = min(max((e - a) / (b - a), 0.0), 1.0)
    return a + (b - a) * stats.norm.cdf(stats.norm.ppf(q) - R / sigma)


def ref_radius(lower, t):
    """sup{R >= 0: lower(R) >= t} to 1e-12 (brentq), 0 when lower(0) < t."""
    if lower(0.0) < t:
        return 0.0
    hi = 1.0
    while lower(hi) >= t:
        hi *= 2
    return optimize.brentq(lambda r: lower(r) - t, 0.0, hi, xtol=1e-13)


def peaked_rows(rng, n_rows, m, label, strength):
    logits = rng.standard_normal((n_rows, m)) * 1.5
    logits[:, label] += strength + rng.standard_normal(n_rows) * 2.0
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def by_setting(tab, i, measure, bound, t):
    sel = tab[(tab["idx"] == i) & (tab["measure"] == measure) & (tab["bound"] == bound)
              & np.isclose(tab["threshold"], t)]
    assert len(sel) == 1
    return sel.iloc[0]


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    """6 inputs, n0 = 50, n = 2000 peaked float32 rows (continuous scores: no ties), m = 5, sigma = 0.5."""
    from smoothcert.store.importer import import_npz

    rng = np.random.default_rng(11)
    N, n0, n, m = 6, 50, 2000, 5
    labels = np.arange(N) % m
    probs = np.stack([peaked_rows(rng, n0 + n, m, labels[i], s) for i, s in enumerate(np.linspace(1, 5, N))])
    probs[5, n0:] = probs[5, n0:][:, [1, 0, 2, 3, 4]]  # input 5: S favours another class than S0 (margin < 0 rows)
    d = tmp_path_factory.mktemp("cdf")
    np.savez(d / "src.npz", probs=probs, labels=labels)
    import_npz(d / "src.npz", d / "store", sigma=0.5, n0=n0)
    return d / "store", probs, labels, n0


# ---------------------------------------------------------------- store level
def test_store_matches_spec_and_reference_code(realistic):
    """K divides n, no ties: the spec's bound equals the reference code's; radii match brentq to 1e-4 from below."""
    store, probs, labels, n0 = realistic
    K, alpha, sigma = 200, 0.001, 0.5
    ts = [0.1, 0.3, 0.5, 0.7]
    tab, meta = certify(store, "cdf", CertifyOptions(threshold=ts, K=K), progress=False)
    assert len(tab) == 6 * 2 * 2 * len(ts)
    assert list(tab.columns[:9]) == ["idx", "label", "method", "measure", "bound", "threshold", "predict", "radius",
                                     "correct"]
    assert "lower0" in tab.columns
    assert meta["confidence"] == pytest.approx(1 - alpha)
    no_ties = 0
    for i in range(6):
        c = int(np.argmax(probs[i, :n0].astype(np.float64).mean(axis=0)))
        for measure in ("score", "margin"):
            a, b = RANGE[measure]
            z = ref_measure(probs[i, n0:], c, measure)
            lowers = {"cdf": lambda R, z=z, a=a: ref_spec_lower(z, K, alpha, a, sigma, R),
                      "hoeffding": lambda R, z=z, a=a, b=b: ref_hoeffding_lower(z, alpha, a, b, sigma, R)}
            tie_free = len(np.unique(z)) == z.size  # float32 scores near 1 can tie
            no_ties += tie_free
            for R in (0.0, 0.25, 0.5):
                if tie_free:
                    assert lowers["cdf"](R) == pytest.approx(ref_code_lower(z, K, alpha, a, sigma, R), abs=1e-12)
                else:  # exact counts of ties: never looser than the reference's (K - i)/K
                    assert lowers["cdf"](R) >= ref_code_lower(z, K, alpha, a, sigma, R) - 1e-12
            for bound, lower in lowers.items():
                l0 = lower(0.0)
                for t in ts:
                    row = by_setting(tab, i, measure, bound, t)
                    assert row["lower0"] == pytest.approx(l0, abs=1e-10)
                    sup = ref_radius(lower, t)
                    if l0 < t:
                        assert row["predict"] == -1 and row["radius"] == 0.0
                    else:
                        assert row["predict"] == c
                        assert sup - 1e-4 - 1e-9 <= row["radius"] <= sup + 1e-9
                        assert lower(row["radius"]) >= t - 1e-9
    assert no_ties >= 8


def test_margin_of_a_class_that_is_not_the_rows_argmax(realistic):
    """Input 5: S0 picks class c, S rows mostly favour another class: margin z = p_c - max_{j != c} p_j < 0 there."""
    store, probs, labels, n0 = realistic
    c = int(np.argmax(probs[5, :n0].astype(np.float64).mean(axis=0)))
    rows = probs[5, n0:].astype(np.float64)
    not_top = rows.argmax(axis=1) != c
    assert not_top.mean() > 0.5
    tab, _ = certify(store, "cdf", CertifyOptions(measure=["margin"], bound=["hoeffding"], threshold=[-0.9], K=100),
                     progress=False)
    row = by_setting(tab, 5, "margin", "hoeffding", -0.9)
    z = rows[:, c] - np.max(np.where(np.arange(rows.shape[1]) == c, -np.inf, rows), axis=1)
    assert (z[not_top] < 0).all()
    assert row["lower0"] == pytest.approx(ref_hoeffding_lower(z, 0.001, -1, 1, 0.5, 0.0), abs=1e-12)


def test_measure_values_by_hand():
    from smoothcert.certifier.cdf import measure_values

    rows = np.array([[[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]]], dtype=np.float32)
    for c, margin in ((0, [-0.3, 0.0, -0.7]), (1, [0.2, 0.0, -0.7]), (2, [-0.2, -0.2, 0.7])):
        np.testing.assert_allclose(measure_values(rows, [c], "margin")[0], margin, atol=1e-7)
        np.testing.assert_allclose(measure_values(rows, [c], "score")[0], rows[0, :, c], atol=0)


def test_n_not_divisible_by_K_and_ties(make_store):
    """n = 2050, K = 300: gap 7, 293 thresholds, exact counts; float16-style ties never make it looser."""
    from smoothcert.certifier.cdf import cdf_terms, compact_terms, dkw_eps, lower_bound

    rng = np.random.default_rng(3)
    z = rng.beta(5, 2, size=2050)
    s, q = cdf_terms(np.sort(z), 300, float(dkw_eps(2050, 0.01)))
    assert s.size == 293 == math.ceil(2050 / 7)
    rs, rq = ref_spec_terms(z, 300, 0.01)
    np.testing.assert_allclose(s, rs, rtol=0, atol=0)
    np.testing.assert_allclose(q, rq, rtol=0, atol=1e-15)
    w, u = compact_terms(s, q, 0.0)
    for R in (0.0, 0.1, 0.4):
        assert lower_bound(R, 0.0, w, u, 0.3)[0] == pytest.approx(ref_spec_lower(z, 300, 0.01, 0.0, 0.3, R), abs=1e-12)
    # ties (scores rounded to 1/64): exact counts are >= (K - i)/K, so the bound is never looser than the reference's
    zt = np.round(z * 64) / 64
    s, q = cdf_terms(np.sort(zt), 205, float(dkw_eps(2050, 0.01)))  # 205 divides 2050
    w, u = compact_terms(s, q, 0.0)
    for R in (0.0, 0.2):
        mine = lower_bound(R, 0.0, w, u, 0.3)[0]
        assert mine == pytest.approx(ref_spec_lower(zt, 205, 0.01, 0.0, 0.3, R), abs=1e-12)
        assert mine >= ref_code_lower(zt, 205, 0.01, 0.0, 0.3, R) - 1e-12


def test_flat_scores_and_thresholds_outside_the_range(make_store):
    """All rows equal: one distinct score, finite bounds and radii, no error; t above the max abstains."""
    n0, n, sigma, alpha = 10, 400, 0.25, 0.001
    flat = np.array([0.7, 0.2, 0.1], np.float32)
    onehot = np.array([1.0, 0.0, 0.0], np.float32)
    probs = np.stack([np.tile(flat, (n0 + n, 1)), np.tile(onehot, (n0 + n, 1))])
    store = make_store(probs, np.array([0, 0]), n0, sigma=sigma)
    ts = [0.4, 0.69, 1.0, 1.5]
    tab, _ = certify(store, "cdf", CertifyOptions(measure=["score"], threshold=ts, K=1000), progress=False)
    eps = ref_eps(n, alpha)
    for i, v in ((0, float(flat[0])), (1, 1.0)):
        for bound in ("cdf", "hoeffding"):
            l0 = by_setting(tab, i, "score", bound, 0.4)["lower0"]
            assert l0 == pytest.approx(v * (1 - eps) if bound == "cdf" else v - eps, abs=1e-7)
            for t in ts:
                row = by_setting(tab, i, "score", bound, t)
                assert np.isfinite(row["radius"]) and row["radius"] >= 0
                if t >= 1.0:
                    assert row["predict"] == -1 and row["radius"] == 0.0
    # the flat mid-range input: radius from the closed form sigma (Phi^-1(1 - eps) - Phi^-1(t / v))
    r = by_setting(tab, 0, "score", "cdf", 0.4)["radius"]
    sup = sigma * (stats.norm.ppf(1 - eps) - stats.norm.ppf(0.4 / float(flat[0])))
    assert sup - 1e-4 <= r <= sup + 1e-12
    # margin of flat rows: z = 0.5 everywhere
    tab, _ = certify(store, "cdf", CertifyOptions(measure=["margin"], bound=["cdf"], K=50), progress=False)
    assert by_setting(tab, 0, "margin", "cdf", 0.0)["lower0"] == pytest.approx(-1 + 1.5 * (1 - eps), abs=1e-7)


def test_threshold_at_or_below_the_minimum_is_an_error(realistic):
    store = realistic[0]
    for measure, t in (("score", 0.0), ("score", -0.2), ("margin", -1.0), ("margin", -3.0)):
        with pytest.raises(ValueError, match=f"measure '{measure}'"):
            certify(store, "cdf", CertifyOptions(measure=[measure], threshold=[0.5, t]), progress=False)
    with pytest.raises(ValueError, match="measure 'score'"):  # a list applies to every requested measure
        certify(store, "cdf", CertifyOptions(measure=["margin", "score"], threshold=[-0.5]), progress=False)
    with pytest.raises(ValueError, match="bound"):
        certify(store, "cdf", CertifyOptions(bound=["bernstein"]), progress=False)


def test_default_thresholds_are_the_class_cutoffs(realistic):
    tab, _ = certify(realistic[0], "cdf", CertifyOptions(K=100), progress=False)
    got = tab.groupby("measure")["threshold"].unique()
    assert list(got["score"]) == [0.5] and list(got["margin"]) == [0.0]
    assert (tab.groupby(["idx", "measure"]).size() == 2).all()


def test_n_use_takes_the_first_rows_of_S(realistic):
    store, probs, labels, n0 = realistic
    tab, _ = certify(store, "cdf", CertifyOptions(measure=["score"], bound=["cdf"], K=1000, n_use=999, threshold=[0.2]),
                     progress=False)
    c = int(np.argmax(probs[2, :n0].astype(np.float64).mean(axis=0)))
    z = ref_measure(probs[2, n0:n0 + 999], c, "score")
    assert by_setting(tab, 2, "score", "cdf", 0.2)["lower0"] == pytest.approx(
        ref_spec_lower(z, 1000, 0.001, 0.0, 0.5, 0.0), abs=1e-10)


# ---------------------------------------------------------------- CDF vs Hoeffding
def test_cdf_never_looser_than_hoeffding(realistic):
    """K >= n: the CDF bound dominates Hoeffding at every R (its R = 0 value is the mean minus at most (s_max - a) eps).
    K < n: wherever lower0 dominates, it dominates at every R (convexity of q -> Phi(Phi^-1(q) - r)).
    """
    store, probs, labels, n0 = realistic
    for K in (2000, 200):
        tab, _ = certify(store, "cdf", CertifyOptions(threshold=[0.05, 0.2, 0.5, 0.8], K=K), progress=False)
        key = ["idx", "measure", "threshold"]
        c = tab[tab["bound"] == "cdf"].set_index(key)
        h = tab[tab["bound"] == "hoeffding"].set_index(key).loc[c.index]
        dom = c["lower0"].to_numpy() >= h["lower0"].to_numpy()
        rc, rh = c["radius"].to_numpy(), h["radius"].to_numpy()
        if K == 2000:
            assert dom.all()
        assert (rc[dom] >= rh[dom] - 1e-4).all()
        # K = n/10 (the paper's setting): lower0 loses a little to the K-step discretisation, yet the CDF
        # radius is the larger one for most certified rows (Fig. 5 of Kumar et al. 2020)
        cert = (rc > 0) | (rh > 0)
        assert (rc[cert] >= rh[cert] - 1e-4).mean() >= 0.8
    # the same statement on the bound functions, over a grid of R, for a fresh draw of scores
    from smoothcert.certifier.cdf import cdf_terms, compact_terms, dkw_eps, hoeffding_q, hoeffding_terms, lower_bound

    rng = np.random.default_rng(5)
    grid = np.linspace(0, 2, 41)
    for _ in range(20):
        z = np.sort(rng.beta(rng.uniform(0.3, 5), rng.uniform(0.3, 5), size=500))
        for K in (500, 50):
            w, u = compact_terms(*cdf_terms(z, K, float(dkw_eps(500, 0.01))), 0.0)
            wh, uh = hoeffding_terms(float(hoeffding_q(z.mean(), 500, 0.01, 0.0, 1.0)), 0.0, 1.0)
            lc, lh = lower_bound(grid, 0.0, w, u, 0.5), lower_bound(grid, 0.0, wh, uh, 0.5)
            if K == 500 or lc[0] >= lh[0]:
                assert (lc >= lh - 1e-12).all()


# ---------------------------------------------------------------- soundness
@pytest.mark.parametrize("measure", ["score", "margin"])
def test_soundness_simulation(measure):
    """A 1-D base classifier with a known smoothed score: violations of lower(R) <= truth(R) at rate <= alpha.

    Base score f(x) = Phi(x / tau) (margin: 2 f - 1 for 2 classes); under x + sigma N(0, 1) its smoothed
    value at x0 - R is Phi((x0 - R) / sqrt(tau^2 + sigma^2)). A violation is any R on the grid where the bound
    exceeds the truth. tau small makes f nearly a step, where the bounds are nearly tight. A necessary check: at
    2 alpha it passes too; soundness/test_power.py checks the DKW band and Hoeffding's bound with power.
    """
    from smoothcert.certifier.cdf import cdf_terms, compact_terms, dkw_eps, hoeffding_q, hoeffding_terms, lower_bound

    rng = np.random.default_rng(7 if measure == "score" else 8)
    alpha, n, sigma, tau, x0, trials = 0.2, 300, 0.5, 0.05, 0.3, 300
    a, b = RANGE[measure]
    grid = np.linspace(0, 1.5, 16)
    truth_p = stats.norm.cdf((x0 - grid) / math.hypot(tau, sigma))
    truth = truth_p if measure == "score" else 2 * truth_p - 1
    eps = float(dkw_eps(n, alpha))
    bad = {"cdf": 0, "hoeffding": 0, "cdf without eps": 0}
    for _ in range(trials):
        f = stats.norm.cdf((x0 + sigma * rng.standard_normal(n)) / tau)
        z = np.sort(f if measure == "score" else 2 * f - 1)
        terms = {"cdf": compact_terms(*cdf_terms(z, 100, eps), a),
                 "hoeffding": hoeffding_terms(float(hoeffding_q(z.mean(), n, alpha, a, b)), a, b),
                 "cdf without eps": compact_terms(*cdf_terms(z, 100, 0.0), a)}
        for bound, (w, u) in terms.items():
            bad[bound] += bool((lower_bound(grid, a, w, u, sigma) > truth + 1e-12).any())
    limit = alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    assert bad.pop("cdf without eps") / trials > limit  # the check has power: dropping the DKW slack is caught
    for bound, k in bad.items():
        assert k / trials <= limit, (bound, k)


# ---------------------------------------------------------------- radius search
def test_bisection_precision_and_evaluation_count(monkeypatch):
    """The radius is within 1e-4 below the exact sup, found with at most 1 + ceil(log2(hi / 1e-4)) evaluations of
    lower(R) per threshold (hi = sigma (max u_i - Phi^-1((t - a) / W)), the bracket's upper end, W = sum w_i) and
    at most one for Hoeffding's single term (the check of its closed form); plus one of lower(0) per call.

    The evaluations are counted by running the module's bisection loop as plain Python (Numba's ``py_func`` of
    the same source) with each call of the real compiled ``lower`` counted on its way through.
    """
    from smoothcert.certifier import cdf as C

    calls = []
    real_lower = C._lower

    def counted(R, a, w, u, inv_sigma):
        calls.append(R)
        return real_lower(R, a, w, u, inv_sigma)

    monkeypatch.setattr(C, "_lower", counted)
    monkeypatch.setattr(C, "_bisect", C._bisect.py_func)
    rng = np.random.default_rng(2)
    sigma, bisected = 0.25, 0
    for trial in range(12):
        z = np.sort(rng.beta(rng.uniform(1, 8), rng.uniform(0.5, 3), size=1000))
        bound = "hoeffding" if trial % 4 == 3 else "cdf"
        if bound == "cdf":
            w, u = C.compact_terms(*C.cdf_terms(z, 100, float(C.dkw_eps(1000, 0.001))), 0.0)
        else:
            w, u = C.hoeffding_terms(float(C.hoeffding_q(z.mean(), 1000, 0.001, 0.0, 1.0)), 0.0, 1.0)
        for t in (0.05, 0.3, 0.5, 0.9):
            calls.clear()
            (r,), lower0 = C.certified_radii(0.0, w, u, sigma, [t])

            def lower(R, w=w, u=u):
                return float(np.sum(w * stats.norm.cdf(u - R / sigma)))

            assert lower0 == pytest.approx(lower(0.0), abs=1e-12)
            if lower0 < t:
                assert r == 0.0 and len(calls) == 1
                continue
            sup = ref_radius(lower, t)
            assert sup - 1e-4 - 1e-12 <= r <= sup + 1e-12
            hi = sigma * (float(np.max(u)) - stats.norm.ppf(t / float(np.sum(w))))
            steps = len(calls) - 1                                   # the call's lower(0) aside
            if bound == "hoeffding":
                assert steps <= 1                                    # one term: the closed form, checked once
            else:
                assert steps <= 1 + math.ceil(math.log2(hi / 1e-4)), (steps, hi)
                bisected += steps > 0
    assert bisected >= 10


# ---------------------------------------------------------------- CLI and report
def test_cli_certify_and_report(realistic, tmp_path):
    from click.testing import CliRunner

    from smoothcert import cli

    store = realistic[0]
    out = tmp_path / "cdf.csv"
    res = CliRunner().invoke(cli.main, ["certify", str(store), "--method", "cdf", "--measure", "score,margin",
                                        "--bound", "cdf,hoeffding", "--threshold", "0.2,0.5", "--K", "100",
                                        "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    from smoothcert.certifier.table import read_meta, read_table

    got = read_table(out)
    want, _ = certify(store, "cdf", CertifyOptions(threshold=[0.2, 0.5], K=100), progress=False)
    assert len(got) == len(want) == 6 * 2 * 2 * 2
    np.testing.assert_array_equal(got["radius"].to_numpy(float), want["radius"].to_numpy(float))
    assert "1 - alpha" in read_meta(out)["confidence_statement"]
    res = CliRunner().invoke(cli.main, ["report", str(out), "--radii", "0,0.25,0.5", "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert "cdf = CDF bound" in res.output and "hoeffding" in res.output
    assert (tmp_path / "p-cdf.png").stat().st_size > 0
    res = CliRunner().invoke(cli.main, ["certify", str(store), "--method", "cdf", "--measure", "score",
                                        "--threshold", "0", "--out", str(tmp_path / "x.csv"), "-q"])
    assert res.exit_code != 0 and "measure 'score'" in res.output


def test_report_table_side_by_side():
    import pandas as pd

    from smoothcert.certifier.report_confidence import confidence_table

    df = pd.DataFrame({"idx": [0, 0, 1, 1], "label": [0, 0, 1, 1], "method": "cdf", "measure": "score",
                       "bound": ["cdf", "hoeffding"] * 2, "threshold": 0.5, "predict": [0, 0, 1, -1],
                       "radius": [0.3, 0.1, 0.2, 0.0], "correct": [1, 1, 1, 0]})
    tab = confidence_table(df, [0.0, 0.15])
    assert tab.loc[("score", 0.5), ("r=0", "cdf")] == 1.0
    assert tab.loc[("score", 0.5), ("r=0", "hoeffding")] == 0.5
    assert tab.loc[("score", 0.5), ("r=0.15", "cdf")] == 1.0
    assert tab.loc[("score", 0.5), ("r=0.15", "hoeffding")] == 0.0
    assert tab.loc[("score", 0.5), ("ACR", "cdf")] == pytest.approx(0.25)
