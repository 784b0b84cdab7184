"""Violation rates of cdf and soft computed from the top K of each row (docs/methods.md section 9).

Inputs come from the harness's scenarios (sim.py: every noisy row is one of a
bank of template rows, so the true distribution is exact). Each input is
certified from its full selection rows and the top K of its estimation rows
(``store.compact.compact_rows``), the block a compact store with full
selection rows gives, and a certificate violates when its radius exceeds the
tight radius of its claim at the true distribution (``sim.ref_cdf``,
``sim.ref_soft``). K is small, so the certified class falls outside many
rows' top K. Both rules of ``--compact-rule`` are checked: ``spec`` (sections
4 and 7 unchanged on the bounded values) and ``dominated``. A check fails when violations exceed the 1 - 1e-6 quantile of
Binomial(trials, alpha), and requires a fair share of certified inputs.
A necessary check without power against a 2x-alpha over-claim; the compact
values only lower the certificates, and test_power.py holds the checks of
cdf's and soft's bounds that do have it.
"""
from __future__ import annotations

import numpy as np
import pytest
from smoothcert.certifier.block import Block
from smoothcert.certifier.registry import get_method
from smoothcert.store.compact import compact_rows

from . import sim

ALPHA = 0.1
RUNS = {m: kw for m, kw in sim.method_runs(ALPHA) if m in ("cdf", "soft")}


def hidden_class_scenario(n0=100, n=400, sigma=0.5):
    """Six classes, top 2 kept: the smoothed top class is often outside a row's top 2 (rows that favour
    others), in a clear lead, a narrow lead, a lead of class 1, and a near tie."""
    rows = {
        "conf0": [0.90, 0.04, 0.03, 0.01, 0.01, 0.01],
        "mix0": [0.55, 0.30, 0.05, 0.04, 0.03, 0.03],
        "away1": [0.08, 0.50, 0.30, 0.05, 0.04, 0.03],   # class 0 third
        "away2": [0.10, 0.05, 0.45, 0.35, 0.03, 0.02],   # classes 0 and 1 outside the top 2
        "conf1": [0.03, 0.90, 0.03, 0.02, 0.01, 0.01],
        "flat": [0.24, 0.19, 0.20, 0.13, 0.12, 0.12],   # class 1 just outside the top 2
    }
    names = list(rows)
    bank = np.asarray([rows[k] for k in names], dtype=np.float32)
    d = [
        sim.weights(names, {"conf0": .45, "mix0": .15, "away1": .15, "away2": .10, "flat": .15}),
        sim.weights(names, {"conf0": .60, "away1": .20, "flat": .20}),
        sim.weights(names, {"conf1": .50, "away2": .20, "conf0": .30}),
        sim.weights(names, {"conf0": .36, "conf1": .30, "flat": .34}),
    ]
    return sim.Scenario(bank=bank, dists=d, n0=n0, n=n, sigma=sigma, names=names)


SCENARIOS = {  # name: (scenario, K, inputs, least share certified per method)
    "hard-m4-top2": (sim.hard_scenario(), 2, 1000, {"cdf": 0.2, "soft": 0.3}),
    "hidden-m6-top2": (hidden_class_scenario(), 2, 1000, {"cdf": 0.2, "soft": 0.3}),
}


def _compact_table(scenario, data, K, method, opts):
    """The method's table on compact blocks with full selection rows (engine columns idx, label added)."""
    probs = np.ascontiguousarray(data["probs"], dtype=np.float32)
    N, R, m = probs.shape
    tp = np.empty((N, R, K), np.float32)
    tc = np.empty((N, R, K), np.uint16)
    ent = np.empty((N, R))
    for i in range(N):
        p, c, e = compact_rows(probs[i], K)
        tp[i], tc[i], ent[i] = p, c, e
    block = Block(idx=np.arange(N), label=data["labels"], n_rows=np.full(N, R, np.int64),
                  core_predict=data["core_predict"], n0=scenario.n0, n0_use=scenario.n0, n_use=scenario.n,
                  sigma=scenario.sigma, m=m, argmax=data["argmax"],
                  compact={"topk_p": tp, "topk_c": tc, "entropy": ent, "rows0": probs[:, : scenario.n0].copy()})
    df = get_method(method).compute(block, opts.validate())
    pos = df.pop("_pos").to_numpy()
    df.insert(0, "idx", block.idx[pos])
    df.insert(1, "label", block.label[pos])
    return df.reset_index(drop=True)


@pytest.mark.parametrize("rule", ["spec", "dominated"])
@pytest.mark.parametrize("method", sorted(RUNS))
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_compact_violation_rate_at_most_alpha(name, method, rule):
    scenario, K, N, share = SCENARIOS[name]
    data = scenario.sample(N, seed=211)
    table = _compact_table(scenario, data, K, method, sim.options({**RUNS[method], "compact_rule": rule}))
    assert (table["rows_bounded"] > 0).mean() > 0.2  # the top K hides a value the certificate uses
    res = sim.evaluate(table, scenario, data["dist"], data["core_predict"], method)
    failures, certified, trials = [], 0, 0
    for setting, (v, tr, cert) in res.items():
        certified += cert
        trials += tr
        if v > sim.slack_limit(tr, ALPHA):
            failures.append(f"{method} ({rule}) {setting}: {v} violations in {tr} trials (rate {v / tr:.3f} > alpha {ALPHA})")
    assert not failures, "\n".join(failures)
    assert certified >= share[method] * trials, f"{method} ({rule}): only {certified} of {trials} certified"


def test_the_harness_catches_an_unsound_compact_soft():
    """Negative control: dropping the bounded rows' mass from the other classes' upper bounds (U = 0 there,
    i.e. trusting the top K to hold every class that matters) must show violations above alpha."""
    import smoothcert.certifier.compact_bounds as CB

    scenario, K, N = hidden_class_scenario(n=4000), 2, 400  # the near tie: class 1 hides in the flat rows
    data = scenario.sample(N, seed=212)
    real = CB.soft_stats

    def unsound(topk_p, topk_c, m, start=0, stop=None, rule="spec"):
        st = real(topk_p, topk_c, m, start, stop, rule=rule)
        zero = np.zeros_like(st.var_lower)
        return CB.SoftStats(st.mean_lower, zero, st.mean_lower, zero, st.bounded)

    CB.soft_stats = unsound
    try:
        table = _compact_table(scenario, data, K, "soft", sim.options(dict(alpha=ALPHA, bound=["hoeffding"])))
    finally:
        CB.soft_stats = real
    res = sim.evaluate(table, scenario, data["dist"], data["core_predict"], "soft")
    v, tr, _ = res[next(iter(res))]
    assert v > sim.slack_limit(tr, ALPHA)
