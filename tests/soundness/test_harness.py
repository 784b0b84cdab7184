"""The harness itself: its truths agree with the spec's numbers and the certifier's definitions,
and it catches unsound certificates (negative controls)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from . import sim


def test_spec_counterexample_numbers():
    # docs/methods.md section 3: P = (cA .5, V .3, cB .2) gives R_NCL = 0.84 sigma
    r_ncl = sim.pair_radius(np.array([0.8, 0.2]), 0, 1.0)
    assert r_ncl == pytest.approx(0.8416, abs=1e-4)
    strict = sim.strict_reference(0.5, 0.8, 0.2, 1.0)
    assert 0 < strict < 0.8 < r_ncl  # the {cA, V} claim fails before 0.8 sigma; the strict radius stays below


def test_pair_and_cdf_references_are_tight_in_closed_form():
    # two classes: the pair radius equals the one-vs-all radius
    assert sim.pair_radius(np.array([0.8, 0.2]), 0, 0.5) == pytest.approx(0.5 * stats.norm.ppf(0.8))
    assert sim.pair_radius(np.array([0.4, 0.6]), 0, 0.5) == -math.inf
    # a two-point score distribution {0, 1}: the CDF bound is the binary radius sigma (Phi^-1(p) - Phi^-1(t))
    lo = lambda R: sim.lower_true([0.0, 1.0], [0.2, 0.8], 0.0, R, 0.5)  # noqa: E731
    assert lo(0.0) == pytest.approx(0.8)
    assert sim.sup_radius(lo, 0.5, 0.5) == pytest.approx(0.5 * stats.norm.ppf(0.8), abs=1e-9)


@pytest.mark.parametrize("ens", sim.ENSEMBLES)
def test_reference_ensemble_equals_the_certifier_ensemble(ens):
    from smoothcert.certifier.ensemble import ensemble_rows

    sc = sim.ensemble_scenario()
    rows, labels = sim.ensemble_templates(sc.member_lp, ens[0], ens[1])
    arg, got, _, _ = ensemble_rows(sc.member_lp[None], ens[0], ens[1])
    assert (arg[0] == labels).all()
    np.testing.assert_allclose(got[0], rows, rtol=0, atol=1e-6)


def test_reference_uncertainty_equals_the_certifier_definitions():
    from smoothcert.certifier.uncertainty import uncertainty_values

    for sc in (sim.hard_scenario(), sim.ensemble_scenario()):
        for f in sim.UNC_THETAS:
            np.testing.assert_allclose(sim.uncertainty(sc.bank, f), uncertainty_values(sc.bank, f), rtol=0, atol=1e-12)


def test_point_estimate_cohen_is_caught():
    sc = sim.hard_scenario()
    data = sc.sample(600, seed=5)
    (v, tr, _), = sim.evaluate(sim.control_point_estimate(sc, data), sc, data["dist"], data["core_predict"],
                               "cohen").values()
    assert v > sim.slack_limit(tr, 0.1)


def test_ncl_is_not_a_strict_certificate_as_the_spec_warns():
    """R_NCL judged as 'the prediction stays in {cA, V}' fails on the spec's counterexample; ncl-strict does not."""
    sc = sim.ncl_counterexample_scenario()
    data = sc.sample(600, seed=6)
    kw = dict(alpha=0.1, joint_alpha=True, uncertainty=["entropy"], theta=[0.8])
    table = sim.certify_arrays(sc, data, "uncertainty", sim.options(kw))
    (v, tr, cert), = sim.evaluate(sim.ncl_as_strict(table), sc, data["dist"], data["core_predict"], "uncertainty").values()
    assert cert > 100 and v > sim.slack_limit(tr, 0.1)
    res = sim.evaluate(table, sc, data["dist"], data["core_predict"], "uncertainty")
    for setting, (v, tr, _) in res.items():
        assert v <= sim.slack_limit(tr, 0.1), setting
