"""Monte-Carlo soundness harness: synthetic inputs whose true distributions are known exactly.

Every noisy row of an input is one of a fixed bank of *template* rows, drawn
i.i.d. with known weights. So for each input the truth is exact, not
estimated: the hard-label class probabilities, the uncertainty-equipped
(extended) probabilities at any threshold, the entropy-selection probability
of ACES, the mean softmax row (soft), the distribution of every score and
margin (cdf), and, for ensembles, all of these for any member subset and
K-consensus (the ensemble row of a template is a deterministic function of
the member templates).

Each input is one independent trial. A certificate *violates* its guarantee
when it claims more than the truth allows (see the ``violations_*``
functions: each states the exact claim it checks, following
docs/methods.md). Nothing here imports the certifier's math: the truth is
computed with plain numpy/scipy.

``certify_arrays`` runs a registered method on in-memory arrays exactly as
the engine's ``certify_block`` does (Block, ensemble, compute), for the bench,
where going through a store adds nothing but time; the tests go through real
stores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

_norm = stats.norm
TOL = 1e-9  # float slack when comparing a certified radius with the true one


# ============================================================= small references
def ppf(p):
    """Phi^-1 with Phi^-1(0) = -inf and Phi^-1(1) = +inf."""
    return _norm.ppf(np.asarray(p, dtype=np.float64))


def entropy(rows):
    p = np.asarray(rows, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -t.sum(axis=-1)


def uncertainty(rows, name):
    """u(p) per docs/methods.md section 3 (larger = more uncertain)."""
    p = np.asarray(rows, dtype=np.float64)
    if name == "entropy":
        return entropy(p)
    if name == "confidence":
        return -p.max(axis=-1)
    if name == "margin":
        s = np.sort(p, axis=-1)
        return -(s[..., -1] - s[..., -2])
    raise ValueError(name)


def hard_label(rows):
    return np.argmax(np.asarray(rows), axis=-1)  # ties towards the lowest index


def pair_radius(q, c, sigma):
    """Largest radius any certificate built from these probabilities may claim for class c.

    sigma/2 (Phi^-1(q_c) - Phi^-1(max_{j != c} q_j)): the worst-case base
    classifier with these class probabilities at x (c on one half-space,
    the runner-up on the opposite one) changes its smoothed prediction at
    exactly this distance. -inf when c is not the strict top class.
    """
    q = np.asarray(q, dtype=np.float64)
    other = np.delete(q, c).max() if q.size > 1 else 0.0
    if not q[c] > other:
        return -math.inf
    with np.errstate(divide="ignore"):
        return float(0.5 * sigma * (ppf(q[c]) - ppf(other)))


def ova_radius(p, sigma):
    """sigma Phi^-1(p): the one-vs-all radius (Cohen's guarantee), -inf below 1/2 and 0 at 1/2."""
    if p < 0.5:
        return -math.inf
    return float(sigma * ppf(p))


def r2_strict(q_av, q_b, sigma):
    """sup{r >= 0 : Phi(Phi^-1(q_av) - r/sigma)/2 >= Phi(Phi^-1(q_b) + r/sigma)}; -inf if it fails at 0."""
    za, zb = float(ppf(q_av)), float(ppf(q_b))
    if zb == -math.inf:
        return math.inf
    if za == math.inf:
        return math.inf

    def f(r):
        return 0.5 * _norm.cdf(za - r / sigma) - _norm.cdf(zb + r / sigma)

    if f(0.0) < 0:
        return -math.inf
    hi = max(sigma * (za - zb), sigma)
    while f(hi) >= 0:
        hi *= 2
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-13, rtol=1e-13))


def lower_true(values, probs, a, R, sigma):
    """Tight lower bound on E[z(x + d)] over ||d|| <= R for a discrete z (Kumar et al. Thm 2 with the true CDF).

    ``a + sum_j (v_j - v_{j-1}) Phi(Phi^-1(P(z >= v_j)) - R/sigma)`` over the
    ascending support v_1 < ... (v_0 = a): the CDF bound with the exact
    survival function, attained by a worst-case base classifier.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(probs, dtype=np.float64)
    order = np.argsort(v)
    v, w = v[order], w[order]
    keep = w > 0
    v, w = v[keep], w[keep]
    uniq, inv = np.unique(v, return_inverse=True)
    pw = np.bincount(inv, weights=w, minlength=uniq.size)
    surv = np.minimum(np.cumsum(pw[::-1])[::-1], 1.0)  # P(z >= v_j)
    gaps = np.diff(uniq, prepend=a)
    with np.errstate(divide="ignore"):
        return float(a + np.sum(gaps * _norm.cdf(ppf(surv) - R / sigma)))


def sup_radius(fn, t, sigma):
    """sup{R >= 0 : fn(R) >= t} for a non-increasing fn; -inf when fn(0) < t."""
    if fn(0.0) < t:
        return -math.inf
    hi = sigma
    while fn(hi) >= t:
        hi *= 2
        if hi > 1e6:
            return math.inf
    return float(optimize.brentq(lambda r: fn(r) - t, 0.0, hi, xtol=1e-12, rtol=1e-12))


# ============================================================= template banks
def peaked(m, c, peak):
    row = np.full(m, (1.0 - peak) / (m - 1))
    row[c] = peak
    return row


def standard_bank(m=4, n_random=8, seed=7):
    """Template rows for m classes, with names: per class c a confident row (``conf{c}``, peak 0.94),
    a medium one (``med{c}``, 0.56) and an uncertain one (``unc{c}``, 0.30, near-uniform), plus
    ``n_random`` Dirichlet rows (``rnd{j}``) that give the score distributions some spread."""
    rng = np.random.default_rng(seed)
    names, rows = [], []
    for c in range(m):
        for kind, peak in (("conf", 0.94), ("med", 0.56), ("unc", 0.30)):
            names.append(f"{kind}{c}")
            rows.append(peaked(m, c, peak))
    for j in range(n_random):
        names.append(f"rnd{j}")
        rows.append(rng.dirichlet(np.ones(m) * 0.7))
    bank = np.asarray(rows, dtype=np.float32)
    return names, bank


def member_bank(m=4, k=3, n_templates=32, seed=11):
    """Member log-softmax templates (T, k, m) float32: a class peak shared by the members plus
    per-member noise, so that members often, not always, agree; the ensemble label of a template
    depends on the members used and on K-consensus. Template t peaks on class t % m."""
    rng = np.random.default_rng(seed)
    base_cls = np.arange(n_templates) % m
    logits = rng.normal(0.0, 1.5, size=(n_templates, k, m))
    logits[np.arange(n_templates), :, base_cls] += rng.uniform(1.0, 5.0, size=(n_templates, 1))
    lp = logits - logits.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    return lp.astype(np.float32)


def ensemble_templates(member_lp, members, consensus=None):
    """Reference ensemble rows (T, m) float32 and hard labels of member templates (docs/methods.md section 6).

    Members in query order; with K-consensus a template uses the first K
    members when their hard labels agree, else all; the label is the argmax
    of the summed log-probabilities (ties to the lowest index), the row the
    softmax of their mean.
    """
    lp = np.asarray(member_lp, dtype=np.float32)
    T = lp.shape[0]
    members = list(members)
    K = len(members) if consensus is None else int(consensus)
    rows = np.empty((T, lp.shape[2]), np.float32)
    labels = np.empty(T, np.int64)
    for t in range(T):
        used = members
        if K < len(members):
            first = [int(np.argmax(lp[t, j])) for j in members[:K]]
            if all(f == first[0] for f in first):
                used = members[:K]
        acc = lp[t, used].astype(np.float64).sum(axis=0)
        labels[t] = int(np.argmax(acc))
        z = acc / len(used)
        e = np.exp(z - z.max())
        rows[t] = (e / e.sum()).astype(np.float32)
    return rows, labels


# ============================================================= scenarios
@dataclass
class Scenario:
    """Inputs drawn round-robin from ``dists`` (weight vectors over the bank's templates)."""

    bank: np.ndarray                 # (T, m) float32 template rows
    dists: list                      # list of (T,) weight vectors
    n0: int
    n: int
    sigma: float
    cores: list | None = None        # per distribution: core model's clean prediction (ACES)
    member_lp: np.ndarray | None = None  # (T, k, m) member log-prob templates (ensembles)
    names: list = field(default_factory=list)

    @property
    def m(self):
        return self.bank.shape[1]

    def dist_of(self, N):
        return np.arange(N) % len(self.dists)

    def sample(self, N, seed):
        """Arrays for N inputs: template indices (N, R), probs, argmax, labels, core_predict, members."""
        rng = np.random.default_rng(seed)
        R = self.n0 + self.n
        d = self.dist_of(N)
        tix = np.empty((N, R), np.int64)
        for j, w in enumerate(self.dists):
            sel = np.flatnonzero(d == j)
            w = np.asarray(w, np.float64)
            tix[sel] = rng.choice(len(w), size=(sel.size, R), p=w / w.sum())
        out = {"tix": tix, "dist": d}
        if self.member_lp is not None:
            ens_rows, _ = ensemble_templates(self.member_lp, range(self.member_lp.shape[1]))
            out["probs"] = ens_rows[tix]
            out["member_logprobs"] = self.member_lp[tix]
        else:
            out["probs"] = self.bank[tix]
        out["argmax"] = hard_label(out["probs"]).astype(np.int64)
        q = [np.bincount(hard_label(self.bank_for(None)), weights=w, minlength=self.m) for w in self.dists]
        out["labels"] = np.array([int(np.argmax(q[j])) for j in d], np.int64)
        cores = self.cores if self.cores is not None else [0] * len(self.dists)
        out["core_predict"] = np.array([cores[j] for j in d], np.int64)
        return out

    def bank_for(self, ens):
        """Effective template rows: the bank, or the ensemble rows for ``ens = (members, consensus)``."""
        if self.member_lp is None or ens is None:
            return self.bank if self.member_lp is None else ensemble_templates(self.member_lp, range(self.member_lp.shape[1]))[0]
        return ensemble_templates(self.member_lp, ens[0], ens[1])[0]

    def npz_arrays(self, data):
        arrs = {"probs": data["probs"], "labels": data["labels"], "core_predict": data["core_predict"]}
        if "member_logprobs" in data:
            arrs["member_logprobs"] = data["member_logprobs"]
        return arrs


def weights(names, spec):
    """A weight vector over the bank from {template name: weight}; the rest 0."""
    w = np.zeros(len(names))
    for k, v in spec.items():
        w[names.index(k)] = v
    assert abs(w.sum() - 1) < 1e-9, (spec, w.sum())
    return w


# ============================================================= truths
@dataclass
class Truth:
    """Exact distribution facts of one input distribution (over effective template rows)."""

    rows: np.ndarray       # (T, m) float64 effective rows
    w: np.ndarray          # (T,)
    sigma: float
    _memo: dict = field(default_factory=dict, repr=False)

    def memo(self, key, fn):
        """fn() computed once per key (truths are pure functions of the distribution)."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    @property
    def m(self):
        return self.rows.shape[1]

    @property
    def labels(self):
        return hard_label(self.rows)

    def q(self):
        """Hard-label class probabilities."""
        return self.memo("q", lambda: np.bincount(self.labels, weights=self.w, minlength=self.m))

    def top(self):
        return self.memo("top", self._top)

    def _top(self):
        q = self.q()
        c = int(np.argmax(q))
        assert (np.delete(q, c) < q[c]).all(), f"scenario has a tie at the top: {q}"
        return c

    def q_ext(self, func, theta):
        """Extended probabilities (m + 1): hard label if u < theta, else V (index m)."""
        return self.memo(("ext", func, float(theta)), lambda: self._q_ext(func, theta))

    def _q_ext(self, func, theta):
        u = uncertainty(self.rows, func)
        conf = u < theta
        q = np.bincount(self.labels[conf], weights=self.w[conf], minlength=self.m)
        return np.append(q, self.w[~conf].sum())

    def q_select(self, theta):
        """ACES: P(H(p)/ln m <= theta), the probability that a row selects the certification model."""
        return self.memo(("sel", float(theta)), lambda: self._q_select(theta))

    def _q_select(self, theta):
        h = entropy(self.rows) / math.log(self.m)
        return float(self.w[h <= theta].sum())

    def mean(self):
        return self.memo("mean", lambda: (self.w[:, None] * self.rows).sum(axis=0))

    def measure(self, c, name):
        p = self.rows
        if name == "score":
            return p[:, c]
        return p[:, c] - np.delete(p, c, axis=1).max(axis=1)


# ============================================================= violations
# A certificate row (predict >= 0) violates its guarantee when its radius exceeds the reference
# radius of its claim at the true distribution; a claim about the wrong class has reference -inf
# (any claim violates), a claim that is exactly right with radius 0 has reference 0 (PREDICT-type
# claims: +inf when right). Each reference states the exact claim it checks.

def ref_pair(tr, s):
    """two-step: g(x + d) = predict for ||d|| < radius. Reference: the tight pair radius (``pair_radius``)."""
    return pair_radius(tr.q(), s["predict"], tr.sigma)


def ref_ova(tr, s):
    """cohen, adaptive: predict is the smoothed top class and radius <= sigma Phi^-1(p_predict) (one-vs-all;
    this is the Cohen et al. guarantee itself, stricter than the pair radius)."""
    p = s["predict"]
    return ova_radius(tr.q()[p], tr.sigma) if p == tr.top() else -math.inf


def ref_predict(tr, s):
    """cohen-predict: a returned class is the smoothed classifier's top class."""
    return math.inf if s["predict"] == tr.top() else -math.inf


def ref_uncertainty(tr, s):
    """uncertainty, per guarantee, with the extended probabilities q (V = index m) at (function, theta):

    - cc: the pair radius of q (V a class like any other);
    - ncl: sigma/2 (Phi^-1(q_A + q_V) - Phi^-1(max_{real j != A} q_j)): the spec's (weaker) claim that
      'cA or uncertain' keeps more mass than any single other class;
    - ncl-strict: max(R1, R2) of section 3 at the true probabilities, a lower bound on the radius within
      which the prediction stays in {cA, V} (stricter than that radius: a certificate can only exceed
      it when one of its bounds fails).
    """
    q = tr.q_ext(s["uncertainty"], s["theta"])
    m, p, g = tr.m, s["predict"], s["guarantee"]
    if g == "cc":
        return pair_radius(q, p, tr.sigma)
    real_other = np.delete(q[:m], p).max()
    if g == "ncl":
        return pair_radius(np.array([q[p] + q[m], real_other]), 0, tr.sigma)
    if g == "ncl-strict":
        return strict_reference(q[p], q[p] + q[m], real_other, tr.sigma)
    raise ValueError(g)


def strict_reference(qA, qAV, qB, sigma):
    """max(R1, R2) of ncl-strict at the true probabilities."""
    r1 = pair_radius(np.array([qA, qB]), 0, sigma) if qA > qB else -math.inf
    return max(r1, r2_strict(qAV, qB, sigma))


def ref_soft(tr, s):
    """soft: predict = argmax E[p(x + d)] for ||d|| < radius. Reference: the pair radius of the true mean row."""
    return pair_radius(tr.mean(), s["predict"], tr.sigma)


MEASURE_RANGE = {"score": (0.0, 1.0), "margin": (-1.0, 1.0)}


def ref_cdf(tr, s):
    """cdf: E[z_c(x + d)] >= threshold for ||d|| <= radius.

    bound cdf: the tight radius from the true CDF of z (``lower_true``);
    bound hoeffding (which only bounds the mean): the radius from the true
    mean alone, smaller, and what a correct Hoeffding certificate stays below.
    """
    c, measure, t = s["predict"], s["measure"], float(s["threshold"])
    a, b = MEASURE_RANGE[measure]
    z = tr.measure(c, measure).astype(np.float64)
    if s["bound"] == "cdf":
        return sup_radius(lambda R: lower_true(z, tr.w, a, R, tr.sigma), t, tr.sigma)
    mu = float((tr.w * z).sum())
    q = (mu - a) / (b - a)
    return sup_radius(lambda R: a + (b - a) * _norm.cdf(ppf(q) - R / tr.sigma), t, tr.sigma)


def aces_truth(tr, theta, core):
    """(F_ACES(x), q_select1): the smoothed selection picks the certification model iff q_select1 > 1/2."""
    qs = tr.q_select(theta)
    assert abs(qs - 0.5) > 1e-9, "scenario has a tie in the smoothed selection"
    return (tr.top() if qs > 0.5 else int(core)), qs


def ref_aces(tr, s):
    """aces CERTIFY: selection 1: F_ACES(x + d) = predict for ||d|| < radius, reference
    min(sigma Phi^-1(q_select1), sigma Phi^-1(q_predict)) (selection radius, one-vs-all class radius);
    selection 0 or -1 with a class: predict = F_ACES(x) (radius 0)."""
    f, qs = aces_truth(tr, s["theta"], s["core_predict"])
    p = s["predict"]
    if p != f:
        return -math.inf
    if s["selection"] == 1:
        return min(ova_radius(qs, tr.sigma), ova_radius(tr.q()[p], tr.sigma))
    return 0.0


def ref_aces_predict(tr, s):
    """aces-predict: a returned class is F_ACES(x)."""
    return math.inf if s["predict"] == aces_truth(tr, s["theta"], s["core_predict"])[0] else -math.inf


# method -> (reference, the row columns it depends on besides predict)
REFERENCES = {
    "cohen": (ref_ova, ()),
    "adaptive": (ref_ova, ()),
    "cohen-predict": (ref_predict, ()),
    "two-step": (ref_pair, ()),
    "uncertainty": (ref_uncertainty, ("uncertainty", "theta", "guarantee")),
    "soft": (ref_soft, ()),
    "cdf": (ref_cdf, ("measure", "bound", "threshold")),
    "aces": (ref_aces, ("theta", "selection", "core_predict")),
    "aces-predict": (ref_aces_predict, ("theta", "core_predict")),
}

SETTING_COLUMNS = ("uncertainty", "theta", "guarantee", "measure", "bound", "threshold")


def truths_for(scenario, ens=None):
    """One Truth per distribution of the scenario (for the ensemble ``ens`` = (members, consensus))."""
    eff = scenario.bank_for(ens).astype(np.float64)
    return [Truth(eff, np.asarray(w, np.float64), scenario.sigma) for w in scenario.dists]


def violations(table, scenario, dist, core_predict, method, ens=None):
    """Boolean per certificate row: does it claim more than the truth allows (see REFERENCES)?"""
    ref_fn, cols = REFERENCES[method]
    truths = truths_for(scenario, ens)
    df = pd.DataFrame({"dist": dist[table["idx"].to_numpy()], "predict": table["predict"].to_numpy()})
    for c in cols:
        df[c] = core_predict[table["idx"].to_numpy()] if c == "core_predict" else table[c].to_numpy()
    radius = table["radius"].to_numpy(dtype=np.float64)
    bad = np.zeros(len(table), bool)
    claimed = df["predict"].to_numpy() >= 0
    if not claimed.any():
        return bad
    keys = ["dist", "predict", *cols]
    sub = df[claimed]
    for key, g in sub.groupby(keys, sort=False):
        s = dict(zip(keys, key))
        s = {k: (v.item() if hasattr(v, "item") else v) for k, v in s.items()}
        ref = ref_fn(truths[s["dist"]], s)
        ix = g.index.to_numpy()
        bad[ix] = radius[ix] > ref + TOL
    return bad


def evaluate(table, scenario, dist, core_predict, method, ens=None):
    """Violation counts per setting: {setting: (violations, trials, certified)}; one trial per input and setting."""
    bad = violations(table, scenario, dist, core_predict, method, ens)
    keys = [c for c in SETTING_COLUMNS if c in table.columns]
    pred = table["predict"].to_numpy() >= 0
    if not keys:
        return {"": (int(bad.sum()), len(table), int(pred.sum()))}
    out = {}
    for key, ix in table.groupby(keys, sort=False).indices.items():
        key = key if isinstance(key, tuple) else (key,)
        out["|".join(map(str, key))] = (int(bad[ix].sum()), len(ix), int(pred[ix].sum()))
    return out


def slack_limit(trials, alpha, q=1 - 1e-6):
    """The 1 - 1e-6 quantile of Binomial(trials, alpha): more violations than this fail the check."""
    return int(stats.binom.ppf(q, trials, alpha))


# ============================================================= in-memory certification
def certify_arrays(scenario, data, method, opts, start=0, stop=None):
    """Run a registered method on inputs start:stop of ``data`` as the engine does per block (no store)."""
    import dataclasses

    from smoothcert import certifier  # noqa: F401  (registers every method)
    from smoothcert.certifier.block import Block
    from smoothcert.certifier.registry import get_method

    stop = len(data["labels"]) if stop is None else stop
    sl = slice(start, stop)
    B = stop - start
    meth = get_method(method)
    opts = opts.validate()
    R = scenario.n0 + scenario.n
    rows = data["probs"][sl] if "rows" in meth.fields else None
    block = Block(idx=np.arange(start, stop), label=data["labels"][sl], n_rows=np.full(B, R, np.int64),
                  core_predict=data["core_predict"][sl], n0=scenario.n0,
                  n0_use=opts.n0_use or scenario.n0, n_use=opts.n_use or scenario.n, sigma=scenario.sigma,
                  m=scenario.m, argmax=data["argmax"][sl],
                  rows=None if rows is None else np.ascontiguousarray(rows, dtype=np.float32),
                  member_logprobs=data.get("member_logprobs", None)[sl] if "member_logprobs" in data else None)
    if opts.members is not None or opts.consensus is not None:
        from smoothcert.certifier.ensemble import apply_ensemble

        if opts.members is None:
            opts = dataclasses.replace(opts, members=list(range(data["member_logprobs"].shape[2])))
        apply_ensemble(block, opts)
    df = meth.compute(block, opts)
    pos = df.pop("_pos").to_numpy()
    df.insert(0, "idx", block.idx[pos])
    df.insert(1, "label", block.label[pos])
    return df.reset_index(drop=True)


# ============================================================= the scenarios of the suite and the bench
def hard_scenario(n0=100, n=400, sigma=0.5):
    """Hard labels (m = 4): a clear top class, a close race, a V-heavy mix, a near-binary input.

    Cohen at pA = 0.64 certifies nearly every input, so its violation rate sits
    close to alpha (the check has teeth); the close race exercises two-step's
    runner-up test and cohen-predict.
    """
    names, bank = standard_bank()
    d = [
        weights(names, {"conf0": .50, "med0": .10, "unc0": .04, "conf1": .18, "med1": .06, "unc1": .03,
                        "conf2": .06, "unc2": .03}),
        weights(names, {"conf0": .30, "med0": .12, "unc0": .04, "conf1": .25, "med1": .10, "unc1": .03,
                        "conf2": .06, "unc3": .10}),
        weights(names, {"conf0": .40, "unc0": .12, "unc2": .12, "conf1": .20, "med1": .08, "conf3": .08}),
        weights(names, {"conf0": .70, "med0": .10, "rnd0": .05, "rnd1": .05, "rnd2": .05, "conf1": .05}),
        weights(names, {"conf1": .38, "rnd3": .12, "rnd4": .15, "med2": .20, "rnd5": .15}),
    ]
    return Scenario(bank=bank, dists=d, n0=n0, n=n, sigma=sigma, cores=[0, 1, 2, 0, 3], names=names)


def many_class_scenario(m=10, n0=100, n=400, sigma=0.5):
    """Ten classes: a top class and nine near-equal others, one slightly ahead (two-step's runner-up
    test picks among many similar classes: a multiple-comparison stress test)."""
    names, bank = standard_bank(m=m, n_random=0)
    spec = {"conf0": .45, "conf1": .09}
    for c in range(2, m):
        spec[f"conf{c}"] = (1 - .54) / (m - 2)
    d = [weights(names, spec),
         weights(names, {"conf0": .55, "conf1": .25, **{f"conf{c}": .20 / (m - 2) for c in range(2, m)}})]
    return Scenario(bank=bank, dists=d, n0=n0, n=n, sigma=sigma, cores=[0, 1], names=names)


def ensemble_scenario(n0=100, n=400, sigma=0.5, k=3):
    """Three members whose hard labels often disagree; four mixtures, each with most weight on the
    templates that peak on one class (so the ensembles have a clear, but member-dependent, top class)."""
    lp = member_bank(k=k)
    T, _, m = lp.shape
    rng = np.random.default_rng(5)
    d = []
    for main in (0, 1, 2, 0):
        on = (np.arange(T) % m) == main
        w = rng.dirichlet(np.ones(T))
        w = np.where(on, 0.7 * w / w[on].sum(), 0.3 * w / w[~on].sum())
        d.append(w)
    bank = ensemble_templates(lp, range(k))[0]
    return Scenario(bank=bank, dists=d, n0=n0, n=n, sigma=sigma, cores=[0, 1, 3, 0], member_lp=lp)


UNC_THETAS = {"entropy": [0.8, math.inf], "confidence": [-0.5], "margin": [-0.2]}
ALL_THETAS = sorted({t for v in UNC_THETAS.values() for t in v})  # --theta applies to every function
ACES_THETAS = [0.5, 0.9]
ENSEMBLES = [((0, 1, 2), None), ((2, 0), None), ((0, 1, 2), 1), ((1, 2, 0), 2)]


def check_thresholds_clear(scenario, eps=1e-4):
    """No template's u value (or normalised entropy) lies within eps of a threshold (no rounding ties)."""
    rows = [scenario.bank] if scenario.member_lp is None else [scenario.bank_for(e) for e in ENSEMBLES]
    for r in rows:
        for f in UNC_THETAS:
            u = uncertainty(r, f)
            for t in ALL_THETAS:
                assert np.all(np.abs(u - t) > eps) or math.isinf(t), (f, t)
        h = entropy(r) / math.log(r.shape[1])
        for t in ACES_THETAS:
            assert np.all(np.abs(h - t) > eps), t


# ============================================================= what is checked, per method
def method_runs(alpha):
    """(method, CertifyOptions kwargs) of every check: each method at its overall confidence 1 - alpha
    (``--joint-alpha`` for the methods that spend alpha twice: two-step and uncertainty)."""
    return [
        ("cohen", dict(alpha=alpha)),
        ("cohen-predict", dict(alpha=alpha)),
        ("two-step", dict(alpha=alpha, joint_alpha=True)),
        ("adaptive", dict(alpha=alpha, radius=0.05, stages=[50, 150, 400], beta=0.01)),
        ("uncertainty", dict(alpha=alpha, joint_alpha=True, uncertainty=list(UNC_THETAS), theta=ALL_THETAS)),
        ("soft", dict(alpha=alpha, bound=["bernstein", "hoeffding"])),
        ("cdf", dict(alpha=alpha, measure=["score", "margin"], bound=["cdf", "hoeffding"], K=100)),
        ("aces", dict(alpha=alpha, theta=ACES_THETAS)),
        ("aces-predict", dict(alpha=alpha, theta=ACES_THETAS)),
    ]


def options(kw, ens=None):
    from smoothcert.certifier import CertifyOptions

    opts = CertifyOptions(**kw)
    if ens is not None:
        opts.members, opts.consensus = list(ens[0]), ens[1]
    return opts


# ============================================================= negative controls (the harness must catch these)
def control_point_estimate(scenario, data):
    """An unsound 'cohen': radius sigma Phi^-1(k/n) from the point estimate instead of the lower bound."""
    a = data["argmax"]
    n0 = scenario.n0
    m = scenario.m
    c0 = np.stack([(a[:, :n0] == c).sum(1) for c in range(m)], 1)
    c = np.stack([(a[:, n0:] == c).sum(1) for c in range(m)], 1)
    cA = np.argmax(c0, axis=1)
    p = c[np.arange(len(cA)), cA] / scenario.n
    ok = p >= 0.5
    with np.errstate(divide="ignore"):
        r = np.where(ok, scenario.sigma * ppf(np.where(ok, p, 0.5)), 0.0)
    return pd.DataFrame({"idx": np.arange(len(cA)), "predict": np.where(ok, cA, -1), "radius": r})


def ncl_as_strict(table):
    """ncl rows relabelled ncl-strict: judged against the claim that the prediction stays in {cA, V},
    which docs/methods.md section 3 says R_NCL does NOT guarantee."""
    t = table[table["guarantee"] == "ncl"].copy()
    t["guarantee"] = "ncl-strict"
    return t.reset_index(drop=True)


def ncl_counterexample_scenario(sigma=0.5, n0=100, n=400):
    """The spec's counterexample P = (cA .5, V .3, cB .2) (V: uncertain rows at entropy theta 0.8)."""
    names, bank = standard_bank()
    return Scenario(bank=bank, dists=[weights(names, {"conf0": .5, "unc2": .3, "conf1": .2})], n0=n0, n=n,
                    sigma=sigma, cores=[0], names=names)
