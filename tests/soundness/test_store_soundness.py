"""Every certificate's violation rate, measured on real stores whose true distributions are known.

Each input is one independent trial (see sim.py for the exact claim checked
per method). Each method runs at overall confidence 1 - alpha (alpha = 0.1;
``--joint-alpha`` where a method spends alpha twice), and a check fails only
when the violations exceed the 1 - 1e-6 quantile of Binomial(trials, alpha).
Each check also requires that the method certified a fair share of inputs,
so that it cannot pass by abstaining. bench/soundness.py runs the same at
alpha = 0.01 over many more trials. These are necessary checks: most claims
here hold with room to spare (a radius that combines two bounds errs only
when both do), so a certificate computed at 2 alpha passes them too; the
checks that catch it are in test_power.py.
"""
from __future__ import annotations

import pytest

from smoothcert.certifier import certify

from . import sim

ALPHA = 0.1
RUNS = sim.method_runs(ALPHA)
# the least share of inputs a run must certify (summed over its settings), so a check has teeth
MIN_CERTIFIED = {"cohen": 0.4, "cohen-predict": 0.6, "two-step": 0.4, "adaptive": 0.3, "uncertainty": 0.3,
                 "soft": 0.5, "cdf": 0.3, "aces": 0.4, "aces-predict": 0.6}


def _check(store, method, kw, ens=None, min_share=None):
    sc, data = store["scenario"], store["data"]
    table, _ = certify(str(store["path"]), method, sim.options(kw, ens), progress=False, verify="used")
    assert len(table) > 0
    res = sim.evaluate(table, sc, data["dist"], data["core_predict"], method, ens)
    failures = []
    certified = trials = 0
    for setting, (v, tr, cert) in res.items():
        certified += cert
        trials += tr
        if v > sim.slack_limit(tr, ALPHA):
            failures.append(f"{method} {ens} {setting}: {v} violations in {tr} trials (rate {v / tr:.3f} > alpha {ALPHA})")
    assert not failures, "\n".join(failures)
    share = MIN_CERTIFIED[method] if min_share is None else min_share
    assert certified >= share * trials, f"{method} {ens}: only {certified} of {trials} certified"
    return res


@pytest.mark.parametrize("method,kw", RUNS, ids=[m for m, _ in RUNS])
def test_violation_rate_at_most_alpha(hard_store, method, kw):
    _check(hard_store, method, kw)


_ENS_METHODS = {  # member settings -> methods checked on the ensemble store (bench/soundness.py: all of them)
    sim.ENSEMBLES[0]: ("cohen", "two-step", "uncertainty", "soft", "cdf", "aces"),
    sim.ENSEMBLES[1]: ("cohen", "two-step"),
    sim.ENSEMBLES[2]: ("cohen", "cohen-predict"),
    sim.ENSEMBLES[3]: ("cohen", "adaptive", "aces-predict"),
}
ENS_RUNS = [(m, kw, ens) for ens, methods in _ENS_METHODS.items() for m, kw in RUNS if m in methods]


@pytest.mark.parametrize("method,kw,ens", ENS_RUNS, ids=[f"{m}-{'+'.join(map(str, e[0]))}-K{e[1]}" for m, _, e in ENS_RUNS])
def test_ensemble_violation_rate_at_most_alpha(ensemble_store, method, kw, ens):
    # K = 1 (the first member alone) is a weaker classifier: fewer certificates
    _check(ensemble_store, method, kw, ens, min_share=0.1 if ens[1] == 1 else None)
