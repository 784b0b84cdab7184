"""Soundness checks with power: each must pass at alpha and FAIL, in the same run, with the certificate computed at 2 alpha.

A soundness check that only asserts "violation rate <= alpha" passes a
certificate that is twice too bold whenever the method is conservative
(discreteness, union bounds that never bind). Each check here is a one-sided
binomial test (power.py): H0 "violations happen at most at the level",
rejected when the count exceeds the 1 - 1e-4 quantile of Binomial(trials,
level). The settings are chosen so that the method's true violation rate is
close to its level (true probabilities at which Clopper-Pearson, the DKW band,
Hoeffding's bound or the confidence sequence is nearly exact, runner-ups
clearly found so that the bound on the runner-up binds), and the trial count
so that the same code run at 2 alpha (the planted over-claim: twice the
alpha passed to the real code, nothing edited) exceeds the limit with
probability >= 0.999. Each test runs both and prints one line (``pytest -s``):
the violations at alpha and at 2 alpha, the limit and the power.

Where a certificate rests on several bounds joined by a union bound
(two-step, uncertainty, aces, incremental), the check counts each bound's own
event, at the level docs/methods.md assigns it: the certificate claims
nothing more than all of them holding, and their levels add up to its
overall alpha. A certificate whose radius combines two bounds exceeds the
truth far less often than either bound fails (both must err together), so
the radius alone cannot tell alpha from 2 alpha; the bounds can. Methods
whose claim is one bound (cohen, adaptive, cdf at one row) are checked on
the claim itself.

Inputs go through each registered method's compute function as the engine
calls it per block (``sim.certify_arrays``); test_store_soundness.py runs the
same methods on real stores. Every truth is exact (template rows drawn with
known weights, sim.py).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from . import power as PW
from . import sim

ALPHA = 0.2          # nominal alpha of every check below; the mutant runs at 2 * ALPHA
SIGMA = 0.5


# ============================================================= scenarios
def scenario(m, spec, n0, n, theta_rows=None):
    """A sim.Scenario of one distribution: ``spec`` {name: (class, peak, weight)}; rows peaked at class (peak 1: one-hot)."""
    names = list(spec)
    bank = np.asarray([sim.peaked(m, c, peak) for c, peak, _ in spec.values()], dtype=np.float32)
    w = sim.weights(names, {k: v[2] for k, v in spec.items()})
    return sim.Scenario(bank=bank, dists=[w], n0=n0, n=n, sigma=SIGMA, names=names)


def truth(sc):
    return sim.truths_for(sc)[0]


def run(sc, data, method, **kw):
    """The method's table at ALPHA and at 2 ALPHA on the same inputs."""
    return [sim.certify_arrays(sc, data, method, sim.options({**kw, "alpha": a})) for a in (ALPHA, 2 * ALPHA)]


# ============================================================= designs (the numbers each docstring states)
# (trials, n, true probability): the CP events below are at their exact rates (power.cp_*_rate)
COHEN = dict(trials=300, n0=200, n=400, q=0.655)
TWO_STEP = dict(trials=700, n0=600, n=400, qA=0.735, qB=0.175)
CC = dict(trials=700, n0=800, n=400, qA=0.52, qV=0.265)
NCL_STRICT = dict(trials=1300, n0=800, n=400, qA=0.4975, qB=0.17)
ACES = dict(trials=700, n0=400, n=400, qA=0.53, qS=0.735, theta=0.5)
INCREMENTAL = dict(trials=300, n0=200, n=1000, P=400, qA=0.8625, lost=0.0725)
ADAPTIVE = dict(trials=600, n0=200, stages=(100, 1000), q=0.685, beta=1e-4)
CDF_ONE_ROW = dict(trials=700, m=3, alpha=0.21, threshold=0.34)
CDF_DKW = dict(trials=300, n=400)
SOFT_ONE_ROW = dict(trials=9000, m=7, alpha=0.235)
CS = dict(trials=4500, T=100, p=0.81)


def designs() -> dict:
    """{check name: power.Design} with every rate computed exactly from the settings above."""
    a, d = ALPHA, {}
    d["cohen"] = PW.Design(COHEN["trials"], a, PW.cp_lower_rate(COHEN["n"], COHEN["q"], a),
                           PW.cp_lower_rate(COHEN["n"], COHEN["q"], 2 * a))
    for name, cfg, level, (qa, qb), upper in (
            ("two-step", TWO_STEP, a / 2, ("qA", "qB"), True),
            ("uncertainty cc", CC, a / 2, ("qA", "qV"), True),
            ("uncertainty ncl-strict", NCL_STRICT, a / 3, ("qA", "qB"), True),
            ("aces", ACES, a / 2, ("qA", "qS"), False)):
        n = cfg["n"]
        d[f"{name} pA"] = PW.Design(cfg["trials"], level, PW.cp_lower_rate(n, cfg[qa], level),
                                    PW.cp_lower_rate(n, cfg[qa], 2 * level))
        second = PW.cp_upper_rate if upper else PW.cp_lower_rate
        tag = {"qB": "pB", "qV": "pB", "qS": "pS"}[qb]
        d[f"{name} {tag}"] = PW.Design(cfg["trials"], level, second(n, cfg[qb], level), second(n, cfg[qb], 2 * level))
    c = INCREMENTAL
    d["incremental pA"] = PW.Design(c["trials"], a, PW.cp_lower_rate(c["n"], c["qA"], a),
                                    PW.cp_lower_rate(c["n"], c["qA"], 2 * a))
    d["incremental zeta"] = PW.Design(c["trials"], a, PW.cp_upper_rate(c["P"], c["lost"], a),
                                      PW.cp_upper_rate(c["P"], c["lost"], 2 * a))
    c = ADAPTIVE
    d["adaptive"] = PW.Design(c["trials"], a, PW.adaptive_rate(c["q"], c["stages"], a, c["beta"]),
                              PW.adaptive_rate(c["q"], c["stages"], 2 * a, c["beta"]))
    c = CDF_ONE_ROW
    for bound in ("cdf", "hoeffding"):
        d[f"cdf one row, bound {bound}"] = PW.Design(c["trials"], c["alpha"], PW.hoeffding_one_row_rate(1 / c["m"], c["alpha"]),
                                              PW.hoeffding_one_row_rate(1 / c["m"], 2 * c["alpha"]))
    d["cdf DKW band"] = PW.Design(CDF_DKW["trials"], a, PW.dkw_rate(CDF_DKW["n"], a), PW.dkw_rate(CDF_DKW["n"], 2 * a))
    c = SOFT_ONE_ROW
    d["soft lower_c"] = PW.Design(c["trials"], c["alpha"] / 2, PW.hoeffding_one_row_rate(1 / c["m"], c["alpha"] / 2),
                                  PW.hoeffding_one_row_rate(1 / c["m"], c["alpha"]))
    d["confidence sequence"] = PW.Design(CS["trials"], a, PW.cs_upper_rate(CS["p"], CS["T"], a),
                                         PW.cs_upper_rate(CS["p"], CS["T"], 2 * a))
    return d


DESIGNS = designs()


def _check(name, nominal, mutant, trials=None):
    return PW.check(name, DESIGNS[name], int(nominal), int(mutant), trials)


# ============================================================= cohen
def test_cohen_power():
    """cohen's claim, radius <= sigma Phi^-1(P(cA)), fails exactly when CP_lower(k_A, n, alpha) > P(cA) (one bound).

    Two classes, P(class 0) = 0.655, n0 = 200, n = 400, alpha = 0.2: 300
    trials at level 0.2, limit 87; exact violation rates 0.1859 (alpha) and
    0.3983 (2 alpha), power 0.9999.
    """
    sc = scenario(2, {"c0": (0, 1.0, COHEN["q"]), "c1": (1, 1.0, 1 - COHEN["q"])}, COHEN["n0"], COHEN["n"])
    data = sc.sample(COHEN["trials"], seed=1)
    v = [sim.violations(t, sc, data["dist"], data["core_predict"], "cohen").sum() for t in run(sc, data, "cohen")]
    _check("cohen", *v)


# ============================================================= two-step and uncertainty (cc, ncl-strict)
def test_two_step_power():
    """two-step's radius rests on pA <= P(cA) and pB >= P(runner-up), each at alpha/2 (section 2: cB found, kA + kB < n).

    Classes 0-3 with P = 0.735, 0.175, 0.05, 0.04, n0 = 600 (every input finds
    runner-up 1), n = 400, alpha = 0.2: each bound at level 0.1 on 700
    trials, limit 101. pA: exact rates 0.0952 and 0.1984, power 0.9999; pB:
    0.0813 and 0.1972, power 0.9998.
    """
    c = TWO_STEP
    qC = 1 - c["qA"] - c["qB"]
    sc = scenario(4, {"c0": (0, 1.0, c["qA"]), "c1": (1, 1.0, c["qB"]), "c2": (2, 1.0, 0.05),
                      "c3": (3, 1.0, round(qC - 0.05, 10))}, c["n0"], c["n"])
    data = sc.sample(c["trials"], seed=2)
    tabs = run(sc, data, "two-step")
    for t in tabs:
        assert (t["runner_up"] == 1).all() and (t["p_lower"].notna()).all()
    _check("two-step pA", *[(t["p_lower"] > c["qA"]).sum() for t in tabs])
    _check("two-step pB", *[(t["p_upper"] < c["qB"]).sum() for t in tabs])


def _uncertainty_scenario(c, real_runner_up):
    """m = 4 with uncertain rows (entropy 1.33 >= theta 0.8: labelled V); class 0 on top, then V, then class 1."""
    qA, rest = c["qA"], 1 - c["qA"]
    if real_runner_up:   # ncl-strict: V 0.30, runner-up class 1 at qB, class 2 the rest
        qV, qB = 0.30, c["qB"]
    else:                # cc: V is the runner-up at qV, class 1 below it
        qV, qB = c["qV"], 0.14
    spec = {"c0": (0, 0.9, qA), "unc": (3, 0.4, qV), "c1": (1, 0.9, qB), "c2": (2, 0.9, round(rest - qV - qB, 10))}
    return scenario(4, spec, c["n0"], c["n"])


@pytest.mark.parametrize("guarantee", ["cc", "ncl-strict"])
def test_uncertainty_power(guarantee):
    """uncertainty rests on pA <= P(cA) and pB >= P(runner-up): each at alpha/2 (cc, runner-up V) or alpha/3 (ncl-strict).

    Extended probabilities (entropy, theta 0.8), n0 = 800, n = 400, alpha = 0.2.
    cc: P = (0.52, V 0.265, 0.14, 0.075), runner-up V: each bound at level
    0.1 on 700 trials, limit 101; pA: exact rates 0.0882 and 0.1975, power
    0.9998; pB: 0.0952 and 0.1984, power 0.9999. ncl-strict: P = (0.4975,
    V 0.30, 0.17, 0.0325), runner-up class 1 among real classes: each bound
    at level 0.0667 on 1,300 trials, limit 122; pA: exact rates 0.0605 and
    0.1251, power 0.9998; pB: 0.0603 and 0.1279, power 0.9999.
    """
    c = CC if guarantee == "cc" else NCL_STRICT
    sc = _uncertainty_scenario(c, real_runner_up=guarantee == "ncl-strict")
    data = sc.sample(c["trials"], seed=3)
    q = truth(sc).q_ext("entropy", 0.8)
    runner, q_runner = (4, q[4]) if guarantee == "cc" else (1, q[1])
    assert q[0] == pytest.approx(c["qA"], abs=1e-7) and q_runner == pytest.approx(c.get("qV", c.get("qB")), abs=1e-7)
    tabs = [t[t["guarantee"] == guarantee] for t in run(sc, data, "uncertainty", uncertainty=["entropy"], theta=[0.8],
                                                         guarantee=[guarantee])]
    for t in tabs:
        assert len(t) == c["trials"] and (t["top_class"] == 0).all() and (t["runner_up"] == runner).all()
    name = f"uncertainty {guarantee}"
    _check(f"{name} pA", *[(t["p_lower"] > q[0]).sum() for t in tabs])
    _check(f"{name} pB", *[(t["p_upper"] < q_runner).sum() for t in tabs])


# ============================================================= aces
def test_aces_power():
    """aces rests on pA <= P(cA) and pS <= P(selection s_hat), each at alpha/2 (section 5).

    Three classes; rows of normalised entropy 0.36 (select the certification
    model at theta 0.5) or 0.99 (do not): P(class 0) = 0.53, P(select) =
    0.735, n0 = 400 (cA = 0 and s_hat = 1 on every input), n = 400, alpha =
    0.2: each bound at level 0.1 on 700 trials, limit 101; pA: exact rates
    0.0879 and 0.1973, power 0.9998; pS: 0.0952 and 0.1984, power 0.9999.
    """
    c = ACES
    spec = {"s0": (0, 0.9, 0.43), "u0": (0, 0.4, 0.10), "s1": (1, 0.9, 0.175), "u1": (1, 0.4, 0.09),
            "s2": (2, 0.9, 0.13), "u2": (2, 0.4, 0.075)}
    sc = scenario(3, spec, c["n0"], c["n"])
    data = sc.sample(c["trials"], seed=4)
    tr = truth(sc)
    assert tr.q()[0] == pytest.approx(c["qA"], abs=1e-7) and tr.q_select(c["theta"]) == pytest.approx(c["qS"], abs=1e-7)
    sel = (sim.entropy(sc.bank) / math.log(3) <= c["theta"])[data["tix"][:, : c["n0"]]]
    assert (sel.sum(1) > c["n0"] / 2).all()                     # s_hat = 1 everywhere (S0 majority selects)
    tabs = run(sc, data, "aces", theta=[c["theta"]])
    for t in tabs:
        assert len(t) == c["trials"]
    _check("aces pA", *[(t["p_lower"] > c["qA"]).sum() for t in tabs])
    _check("aces pS", *[(t["p_select"] > c["qS"]).sum() for t in tabs])


# ============================================================= adaptive
def test_adaptive_power():
    """adaptive with the target radius equal to the true radius: every certificate over-claims, so its rate is the check.

    Two classes, P(class 0) = 0.685, target r = sigma Phi^-1(0.685), stages
    100 and 1,000 (each at alpha/2), beta 1e-4, n0 = 200, alpha = 0.2: 600
    trials at level 0.2, limit 158; exact violation rates 0.1679 (alpha) and
    0.3276 (2 alpha), power 0.9996.
    """
    c = ADAPTIVE
    n = c["stages"][-1]
    sc = scenario(2, {"c0": (0, 1.0, c["q"]), "c1": (1, 1.0, 1 - c["q"])}, c["n0"], n)
    data = sc.sample(c["trials"], seed=5)
    r = SIGMA * float(special.ndtri(c["q"]))
    tabs = run(sc, data, "adaptive", radius=r, stages=list(c["stages"]), beta=c["beta"])
    v = [sim.violations(t, sc, data["dist"], data["core_predict"], "adaptive").sum() for t in tabs]
    for t, k in zip(tabs, v):
        assert k == (t["predict"] >= 0).sum()                    # every certificate is a violation here
    _check("adaptive", *v)


# ============================================================= incremental
def test_incremental_power():
    """incremental rests on pA <= P(f = cA) and zeta >= P(f = cA, f' != cA), each at alpha (section 10).

    Paired hard labels: f says class 0 w.p. 0.8625; f' takes the vote from
    class 0 w.p. 0.0725, gives class 0 a vote w.p. 0.02 and swaps classes 1
    and 2 w.p. 0.03 (so d > lost); n0 = 200, n = 1,000, P = 400, alpha = 0.2:
    each bound at level 0.2 on 300 trials, limit 87; pA: exact rates 0.1797
    and 0.3954, power 0.9999; zeta: 0.1945 and 0.3960, power 0.9999. The
    certificate itself must hold at 2 alpha over the same trials (union bound).
    """
    from smoothcert.certifier.incremental import certify, count_disagreements, count_lost, predicted_class

    c = INCREMENTAL
    rng = np.random.default_rng(6)
    N, n0, n, P = c["trials"], c["n0"], c["n"], c["P"]
    f = rng.choice(3, size=(N, n0 + n), p=[c["qA"], (1 - c["qA"]) / 2, (1 - c["qA"]) / 2])
    u = rng.random(f.shape)
    g = f.copy()
    g[(f == 0) & (u < c["lost"] / c["qA"])] = 1                               # lost: P(f = 0, f' != 0) = 0.0725
    other = f != 0
    g[other & (u < 0.02 / (1 - c["qA"]))] = 0                                  # gained: P(f != 0, f' = 0) = 0.02
    swap = other & (u >= 0.02 / (1 - c["qA"])) & (u < 0.05 / (1 - c["qA"]))   # 1 <-> 2: P = 0.03
    g[swap] = 3 - f[swap]
    c0 = np.stack([np.bincount(r, minlength=3) for r in f[:, :n0]])
    cnt = np.stack([np.bincount(r, minlength=3) for r in f[:, n0:]])
    base, replay = f[:, n0:n0 + P], g[:, n0:n0 + P]
    cA = predicted_class(c0)
    assert (cA == 0).all()
    lost = count_lost(base, replay, cA)
    assert (count_disagreements(base, replay) > lost).all()
    res = [certify(c0, cnt, n, lost, P, SIGMA, a) for a in (ALPHA, 2 * ALPHA)]
    _check("incremental pA", *[(pA > c["qA"]).sum() for _, _, pA, _ in res])
    _check("incremental zeta", *[(zeta < c["lost"]).sum() for _, _, _, zeta in res])
    true_p = c["qA"] - c["lost"] + 0.02                                        # P(f' = 0)
    pred, _, pA, zeta = res[0]
    over = ((pred >= 0) & (pA - zeta > true_p)).sum()
    assert over <= PW.limit(N, 2 * ALPHA), over                              # overall 1 - 2 alpha


# ============================================================= cdf
@pytest.mark.parametrize("bound", ["cdf", "hoeffding"])
def test_cdf_one_row_power(bound):
    """cdf at one row of one-hot rows, where both bounds are closest to exact: lower0 = z - eps(alpha), z in {0, 1}.

    Three classes, each P = 1/3, score measure, threshold 0.34, alpha = 0.21:
    the certificate claims E[z_c] >= 0.34 > 1/3 whenever 1 - eps >= 0.34,
    i.e. only at 2 alpha (eps 0.659; at alpha eps 0.883). 700 trials at level
    0.21, limit 188; exact violation rates 0 (alpha) and 0.3333 (2 alpha),
    power 0.9999. (From n = 2 rows on no distribution brings Hoeffding's
    bound within 0.7 alpha, and the gap grows with n: power.py.)
    """
    c = CDF_ONE_ROW
    sc = scenario(c["m"], {f"c{k}": (k, 1.0, 1 / c["m"]) for k in range(c["m"])}, 5, 1)
    data = sc.sample(c["trials"], seed=7)
    tabs = [sim.certify_arrays(sc, data, "cdf", sim.options(dict(alpha=a, measure=["score"], bound=[bound],
                                                                      threshold=[c["threshold"]])))
            for a in (c["alpha"], 2 * c["alpha"])]
    v = [sim.violations(t, sc, data["dist"], data["core_predict"], "cdf").sum() for t in tabs]
    _check(f"cdf one row, bound {bound}", *v)


def test_cdf_band_power():
    """The cdf bound rests on the DKW band: P_hat(z >= s_i) - eps <= P(z >= s_i) at every threshold s_i at once.

    400 uniform scores per trial (P(z >= s) = 1 - s), K = 10,000 (capped at
    n: every order statistic a threshold), eps = sqrt(ln(1/alpha) / (2n)),
    alpha = 0.2: 300 trials at level 0.2, limit 87; exact rates (the
    one-sided Kolmogorov-Smirnov law) 0.1941 and 0.3912, power 0.9998.
    """
    from smoothcert.certifier.cdf import cdf_terms, dkw_eps

    n = CDF_DKW["n"]
    z = np.sort(np.random.default_rng(8).random((CDF_DKW["trials"], n)), axis=1)
    v = []
    for a in (ALPHA, 2 * ALPHA):
        eps = float(dkw_eps(n, a))
        bad = 0
        for row in z:
            s, q = cdf_terms(row, 10_000, eps)
            assert len(s) == n
            bad += bool((q > 1 - s).any())
        v.append(bad)
    _check("cdf DKW band", *v)


# ============================================================= soft
def test_soft_power():
    """soft rests on lower_c <= E[p_c] at alpha/2 (and Bonferroni upper bounds); checked on one one-hot row, bound hoeffding.

    Seven classes, each P = 1/7, alpha = 0.235: lower_c = p_c - eps with eps
    1.035 (alpha/2) or 0.851 (alpha), so it exceeds E[p_c] = 1/7 only at 2
    alpha, whenever the row is class c. 9,000 trials at level 0.1175, limit
    1,173; exact rates 0 and 0.1429, power 0.9997. Hoeffding's bound is
    closest to exact at one two-valued observation; the default empirical
    Bernstein bound stays below 0.06 of its level for two-valued values at
    every n up to 3,000 (it pays ln(2/d) and a 7 ln(2/d)/(3(n-1)) term), so no
    simulation at the nominal level separates it from its 2x mutant: its
    level is pinned by the exact tests of tests/test_soft.py.
    """
    c = SOFT_ONE_ROW
    sc = scenario(c["m"], {f"c{k}": (k, 1.0, 1 / c["m"]) for k in range(c["m"])}, 3, 1)
    data = sc.sample(c["trials"], seed=9)
    tabs = [sim.certify_arrays(sc, data, "soft", sim.options(dict(alpha=a, bound=["hoeffding"])))
            for a in (c["alpha"], 2 * c["alpha"])]
    _check("soft lower_c", *[(t["p_lower"] > 1 / c["m"] + 1e-12).sum() for t in tabs])


# ============================================================= the confidence sequence
def test_confidence_sequence_power():
    """CS_upper(k_t, t, a) >= p at every prefix t = 1..100 at once, with probability >= 1 - a (Ville's inequality).

    Bernoulli(0.81) sequences, every prefix looked at, a = 0.2: the
    mixture martingale crosses 1/a mostly in the first rows, where its
    jumps overshoot, so the sequence is conservative for most p; at p =
    0.81 a single early failure already leaves the band at 2a. 4,500 trials
    at level 0.2, limit 1,001; exact rates (dynamic programme over (t, k_t))
    0.0751 and 0.2432, power 0.9994. The real bound is evaluated once per
    distinct (k, t) the sequences visit.
    """
    from smoothcert.stats.confseq import cs_upper

    T, p = CS["T"], CS["p"]
    k = (np.random.default_rng(10).random((CS["trials"], T)) < p).cumsum(axis=1)
    t = np.broadcast_to(np.arange(1, T + 1), k.shape)
    key = t * (T + 1) + k
    uniq, inv = np.unique(key, return_inverse=True)
    v = []
    for a in (ALPHA, 2 * ALPHA):
        out = cs_upper(uniq % (T + 1), uniq // (T + 1), a) < p
        v.append(out[inv.reshape(k.shape)].any(axis=1).sum())
    _check("confidence sequence", *v)


# ============================================================= the designs themselves
def test_the_documented_designs():
    """Every number a docstring above states (trials, limit, exact rates, power) is what power.py computes now,
    every nominal rate is at most its level, every power is >= 0.999, and no bound lands within 1e-4 of a truth."""
    docs = {"cohen": test_cohen_power, "two-step": test_two_step_power, "uncertainty": test_uncertainty_power,
            "aces": test_aces_power, "adaptive": test_adaptive_power, "incremental": test_incremental_power,
            "cdf DKW": test_cdf_band_power, "cdf": test_cdf_one_row_power, "soft": test_soft_power,
            "confidence sequence": test_confidence_sequence_power}
    for name, d in DESIGNS.items():
        fn = next(f for k, f in docs.items() if name.startswith(k))
        doc = " ".join(fn.__doc__.split())
        assert d.nominal_rate <= d.level and d.power >= 0.999, (name, d.text())
        for s in (f"{d.trials:,} trials", f"limit {d.limit:,}", f"power {d.power:.4f}"):
            assert s in doc, (name, s, d.text())
        for r in (d.nominal_rate, d.mutant_rate):
            assert (f"{r:.4f}" in doc) or (r == 0 and " 0 " in doc), (name, r, d.text())
    for cfg, levels, qs in ((COHEN, (ALPHA,), ("q",)), (TWO_STEP, (ALPHA / 2,), ("qA", "qB")),
                            (CC, (ALPHA / 2,), ("qA", "qV")), (NCL_STRICT, (ALPHA / 3,), ("qA", "qB")),
                            (ACES, (ALPHA / 2,), ("qA", "qS"))):
        for q in qs:
            assert PW.cp_gap(cfg["n"], cfg[q], levels + tuple(2 * x for x in levels)) > 1e-4
    assert PW.cp_gap(INCREMENTAL["n"], INCREMENTAL["qA"], (ALPHA, 2 * ALPHA)) > 1e-4
    assert PW.cp_gap(INCREMENTAL["P"], INCREMENTAL["lost"], (ALPHA, 2 * ALPHA)) > 1e-4
    for n_i in ADAPTIVE["stages"]:
        assert PW.cp_gap(n_i, ADAPTIVE["q"], (ALPHA / 2, ALPHA)) > 1e-4
    assert PW.cs_gap(CS["p"], CS["T"], (ALPHA, 2 * ALPHA)) > 1e-3
