"""Simultaneous soundness over prefixes (docs/methods.md section 11), measured by simulation.

Bernoulli(p) sequences with known p; the counts at the listed prefixes are
drawn exactly (cumulative sums of binomial increments, the law of a
sequence's prefix counts). A replicate *violates* when ANY listed prefix's
lower bound is above p (or upper bound below p). The claim under test:
that rate stays within alpha for the confidence sequence and for
Clopper-Pearson at alpha / L, while plain Clopper-Pearson at alpha on each of
20 prefixes (the "look at every prefix, keep the best" mistake) exceeds it.
Seeds are fixed; the margins are three binomial standard errors. Over these
prefixes the sequence errs far below its level (its martingale overshoots
1/a), so these checks cannot tell a from 2a; the check that can, at every
prefix of sequences where the sequence is nearly exact, is
tests/soundness/test_power.py::test_confidence_sequence_power.
"""
from __future__ import annotations

import numpy as np
import pytest

from smoothcert.stats.bounds import cp_lower, cp_upper
from smoothcert.stats.confseq import cs_lower, cs_upper

ALPHA = 0.05
REPLICATES = 4000
PREFIXES = np.unique(np.round(np.geomspace(20, 20_000, 20)).astype(np.int64))
P_TRUE = (0.7, 0.9, 0.99)


def prefix_counts(p, prefixes, replicates, seed):
    """(replicates, L) successes in the first t of a Bernoulli(p) sequence, for each listed t."""
    rng = np.random.default_rng(seed)
    steps = np.diff(np.concatenate([[0], prefixes]))
    return rng.binomial(steps, p, size=(replicates, len(prefixes))).cumsum(axis=1)


def any_violation(lower, upper, p):
    """Share of replicates where some prefix's lower bound exceeds p, and where some upper bound is below p."""
    return float((lower > p).any(axis=1).mean()), float((upper < p).any(axis=1).mean())


def margin(alpha, n):
    return alpha + 3 * np.sqrt(alpha * (1 - alpha) / n)


def test_the_prefix_list_has_twenty_values():
    assert len(PREFIXES) == 20 and PREFIXES[0] == 20 and PREFIXES[-1] == 20_000


@pytest.mark.parametrize("p", P_TRUE)
def test_confidence_sequence_holds_at_every_listed_prefix_at_once(p):
    k = prefix_counts(p, PREFIXES, REPLICATES, seed=int(p * 1000))
    t = np.broadcast_to(PREFIXES, k.shape)
    lo_rate, up_rate = any_violation(cs_lower(k, t, ALPHA), cs_upper(k, t, ALPHA), p)
    assert lo_rate <= margin(ALPHA, REPLICATES) and up_rate <= margin(ALPHA, REPLICATES), (lo_rate, up_rate)


@pytest.mark.parametrize("p", P_TRUE)
def test_clopper_pearson_split_over_the_list_holds_at_every_listed_prefix_at_once(p):
    k = prefix_counts(p, PREFIXES, REPLICATES, seed=int(p * 1000))
    t = np.broadcast_to(PREFIXES, k.shape)
    a = ALPHA / len(PREFIXES)
    lo_rate, up_rate = any_violation(cp_lower(k, t, a), cp_upper(k, t, a), p)
    assert lo_rate <= margin(ALPHA, REPLICATES) and up_rate <= margin(ALPHA, REPLICATES), (lo_rate, up_rate)


@pytest.mark.parametrize("p", P_TRUE)
def test_negative_control_unsplit_clopper_pearson_over_twenty_prefixes_exceeds_alpha(p):
    k = prefix_counts(p, PREFIXES, REPLICATES, seed=int(p * 1000))
    t = np.broadcast_to(PREFIXES, k.shape)
    lo_rate, up_rate = any_violation(cp_lower(k, t, ALPHA), cp_upper(k, t, ALPHA), p)
    # each single prefix holds at alpha, but the best of 20 looks does not: caught well beyond the noise
    assert lo_rate > margin(ALPHA, REPLICATES) and up_rate > margin(ALPHA, REPLICATES), (lo_rate, up_rate)
    assert max(lo_rate, up_rate) > 2 * ALPHA
    # and the same looks at a single fixed prefix do hold (the harness itself is not biased)
    single = float((cp_lower(k[:, 9], PREFIXES[9], ALPHA) > p).mean())
    assert single <= margin(ALPHA, REPLICATES)


def test_confidence_sequence_holds_at_every_prefix_one_to_a_thousand():
    """Not only at listed prefixes: a user who looks after every single row is covered too."""
    p, T, R = 0.9, 1000, 1000
    rng = np.random.default_rng(11)
    k = (rng.random((R, T)) < p).cumsum(axis=1)
    t = np.broadcast_to(np.arange(1, T + 1), k.shape)
    lo_rate, up_rate = any_violation(cs_lower(k, t, ALPHA), cs_upper(k, t, ALPHA), p)
    assert lo_rate <= margin(ALPHA, R) and up_rate <= margin(ALPHA, R), (lo_rate, up_rate)
    # Clopper-Pearson looked at after every row fails far more often
    lo_cp = float((cp_lower(k[:200], t[:200], ALPHA) > p).any(axis=1).mean())
    assert lo_cp > 2 * ALPHA


def test_certifier_on_a_store_with_known_p_keeps_the_simultaneous_guarantee(make_store):
    """The same claim through the engine: 600 inputs, each a Bernoulli(p) sequence of hard labels (class 0 w.p. p)."""
    from smoothcert.certifier import CertifyOptions, certify

    rng = np.random.default_rng(5)
    R, n0, n = 600, 30, 2000
    p_true = np.repeat([0.7, 0.9, 0.99], R // 3)
    hard = (rng.random((R, n0 + n)) >= p_true[:, None]).astype(np.int64)  # 0 w.p. p, else 1
    probs = np.where(hard[..., None] == np.arange(2), 0.9, 0.1).astype(np.float32)
    store = make_store(probs, np.zeros(R, np.int64), n0)
    prefixes = [int(v) for v in np.unique(np.round(np.geomspace(20, n, 20)))]
    for interval in ("cs", "cp"):
        table, meta = certify(store, "cohen", CertifyOptions(alpha=ALPHA, n_use=prefixes, interval=interval),
                              progress=False)
        assert len(table) == R * len(prefixes)
        p_lower = table["p_lower"].to_numpy().reshape(R, len(prefixes))
        assert (table["predict"].to_numpy().reshape(R, -1) != 1).all()  # class 0 picked on S0 everywhere
        rate = float((p_lower > p_true[:, None]).any(axis=1).mean())
        assert rate <= margin(ALPHA, R), (interval, rate)
