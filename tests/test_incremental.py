"""incremental certification (docs/methods.md section 10) against an independent computation written here.

The references below follow section 10 line by line with plain Python and
scipy.stats.beta.ppf; they share no code with certifier/. The end-to-end
tests build a base store and a replay store through ``store import`` and
record the pairing (``replay_of``) through the store API, as the replay
sampler does. The soundness simulation, with paired hard labels whose true
probabilities are known exactly and a 2x-alpha mutant it must catch, is
tests/soundness/test_power.py::test_incremental_power.
"""

import json

import numpy as np
import pytest
from scipy import stats

from conftest import rows_from_labels


# ---------------------------------------------------------------- references
def ref_cp_lower(k, n, a):
    return 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))


def ref_cp_upper(k, n, a):
    return 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))


def ref_incremental(c0, c, lost, P, sigma, a):
    """(predict, radius, pA, zeta) of section 10 for one input, in plain Python (zeta from the lost cA votes)."""
    n = int(sum(c))
    cA = ref_top1(c0)
    pA = ref_cp_lower(int(c[cA]), n, a)
    zeta = ref_cp_upper(int(lost), int(P), a)
    p = pA - zeta
    if p < 0.5:
        return -1, 0.0, pA, zeta
    return cA, sigma * float(stats.norm.ppf(p)), pA, zeta


def ref_top1(c0):
    return min(range(len(c0)), key=lambda k: (-c0[k], k))  # top-1, ties towards the lowest index


def ref_disagreements(a, b):
    return [sum(1 for x, y in zip(ra, rb) if x != y) for ra, rb in zip(a, b)]


def ref_lost(a, b, cA):
    """Per input: paired rows where the base (a) says cA and the replay (b) does not."""
    return [sum(1 for x, y in zip(ra, rb) if x == c and y != c) for ra, rb, c in zip(a, b, cA)]


# ----------------------------------------------------------------- pure math
CASES = [
    # (counts0, base counts over n, lost, P)
    ([0, 20, 0], [3, 990, 7], 0, 1000),        # lost = 0, P = n
    ([0, 20, 0], [3, 990, 7], 4, 1000),        # P = n
    ([0, 20, 0], [3, 990, 7], 500, 500),       # lost = P: zeta = 1, abstain
    ([0, 20, 0], [0, 1000, 0], 0, 1000),       # one observed class: pA = a^(1/n)
    ([0, 20, 0], [0, 1000, 0], 3, 200),
    ([7, 7, 6], [400, 500, 100], 2, 100),      # tie in counts0: class 0 (lower index), though 1 leads in S
    ([4, 7, 7], [100, 450, 450], 1, 300),      # tie between 1 and 2: class 1
    ([0, 0, 9], [900, 100, 0], 0, 500),        # cA never seen in S: pA = 0, abstain
    ([20, 0, 0], [9999, 1, 0], 10, 10_000),    # pA near 1
    ([20, 0, 0], [700, 200, 100], 5, 1000),    # p below 0.5 after zeta
    ([1, 0], [60, 40], 0, 100),
]


@pytest.mark.parametrize("joint", [False, True])
@pytest.mark.parametrize("c0,c,lost,P", CASES)
def test_certificate_equals_independent_scipy_computation(c0, c, lost, P, joint):
    from smoothcert.certifier.incremental import certify

    alpha, sigma = 0.001, 0.37
    a = alpha / 2 if joint else alpha
    pred, rad, pA, zeta = certify(np.array([c0]), np.array([c]), sum(c), np.array([lost]), P, sigma, a)
    rp, rr, rpA, rz = ref_incremental(c0, c, lost, P, sigma, a)
    assert pred[0] == rp
    assert pA[0] == pytest.approx(rpA, rel=1e-10, abs=1e-14)
    assert zeta[0] == pytest.approx(rz, rel=1e-10, abs=1e-14)
    assert rad[0] == pytest.approx(rr, rel=1e-9, abs=1e-12)


def test_certificate_vectorised_over_inputs_equals_per_input_reference():
    from smoothcert.certifier.incremental import certify

    rng = np.random.default_rng(3)
    B, m = 300, 4
    c0 = rng.multinomial(30, rng.dirichlet(np.ones(m) * 0.5), size=B)
    n = rng.integers(50, 3000, B)
    c = np.stack([rng.multinomial(k, rng.dirichlet(np.ones(m) * 0.3)) for k in n])
    kA = c[np.arange(B), [ref_top1(list(r)) for r in c0]]
    P = np.minimum(rng.integers(1, 2000, B), n)
    lost = rng.binomial(np.minimum(P, kA), rng.uniform(0, 0.2, B))
    lost[:10] = 0
    lost[10:20] = np.minimum(P, kA)[10:20]
    pred, rad, pA, zeta = certify(c0, c, n, lost, P, 0.5, 0.001)
    for i in range(B):
        rp, rr, rpA, rz = ref_incremental(list(c0[i]), list(c[i]), lost[i], P[i], 0.5, 0.001)
        assert (pred[i], rad[i], pA[i], zeta[i]) == pytest.approx((rp, rr, rpA, rz), rel=1e-9, abs=1e-12), i


def test_one_observed_class_and_no_lost_vote_gives_closed_forms():
    from smoothcert.certifier.incremental import certify

    n, P, a = 1000, 200, 0.001
    pred, rad, pA, zeta = certify(np.array([[0, 5]]), np.array([[0, n]]), n, [0], P, 1.0, a)
    assert pA[0] == pytest.approx(a ** (1 / n), abs=1e-14)           # Beta.ppf(a, n, 1)
    assert zeta[0] == pytest.approx(1 - a ** (1 / P), abs=1e-14)     # Beta.ppf(1 - a, 1, P)
    assert pred[0] == 1 and rad[0] == pytest.approx(stats.norm.ppf(a ** (1 / n) - 1 + a ** (1 / P)), rel=1e-10)


def test_p_exactly_one_half_gives_radius_zero_and_just_below_abstains():
    from smoothcert.certifier.incremental import decide

    pred, rad = decide(np.array([3, 3, 3]), np.array([0.75 - 0.25, np.nextafter(0.5, 0), 0.5 + 1e-12]), 2.0)
    assert list(pred) == [3, -1, 3]
    assert rad[0] == 0.0 and rad[1] == 0.0 and 0 < rad[2] < 1e-10


def test_pA_minus_zeta_at_one_half_from_counts_gives_radius_about_zero():
    # alpha chosen by root finding so that CP_lower(k, n, a) - CP_upper(lost, P, a) = 0.5 up to rounding
    from scipy.optimize import brentq

    from smoothcert.certifier.incremental import certify

    k, n, lost, P = 650, 1000, 100, 1000
    a = brentq(lambda a: ref_cp_lower(k, n, a) - ref_cp_upper(lost, P, a) - 0.5, 1e-12, 0.4, xtol=1e-20, rtol=1e-15)
    pred, rad, pA, zeta = certify(np.array([[9, 1]]), np.array([[k, n - k]]), n, [lost], P, 1.0, a)
    p = pA[0] - zeta[0]
    assert p == pytest.approx(0.5, abs=1e-12)
    assert pred[0] == (0 if p >= 0.5 else -1)  # p >= 0.5 keeps the class, even at radius ~0
    assert rad[0] == pytest.approx(0.0, abs=1e-9)


def test_disagreements_count_paired_rows_only():
    from smoothcert.certifier.incremental import count_disagreements

    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, (50, 77))
    b = np.where(rng.random((50, 77)) < 0.1, rng.integers(0, 3, (50, 77)), a)
    assert list(count_disagreements(a, b)) == ref_disagreements(a.tolist(), b.tolist())
    assert list(count_disagreements(a, a)) == [0] * 50
    # the same multiset of labels in another order is not agreement: rows are paired by position
    assert count_disagreements([[0, 1]], [[1, 0]])[0] == 2
    with pytest.raises(ValueError, match="one shape"):
        count_disagreements(a, b[:, :10])


def test_lost_counts_only_cA_votes_the_replay_takes_away():
    from smoothcert.certifier.incremental import count_disagreements, count_lost

    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, (60, 90))
    b = np.where(rng.random((60, 90)) < 0.2, rng.integers(0, 4, (60, 90)), a)
    cA = rng.integers(0, 4, 60)
    lost = count_lost(a, b, cA)
    assert list(lost) == ref_lost(a.tolist(), b.tolist(), cA.tolist())
    d = count_disagreements(a, b)
    assert (lost <= d).all() and (lost < d).any()          # d > lost: swaps between other classes, gained votes
    # by hand: base 0 0 1 2 2, replay 1 0 0 2 1, cA 0 -> row 0 lost (0 -> 1); row 2 gained (1 -> 0); row 4 (2 -> 1)
    # is a disagreement that touches no cA vote
    assert count_lost([[0, 0, 1, 2, 2]], [[1, 0, 0, 2, 1]], [0])[0] == 1
    assert count_disagreements([[0, 0, 1, 2, 2]], [[1, 0, 0, 2, 1]])[0] == 3
    assert count_lost([[0, 0, 0]], [[1, 2, 3]], [0])[0] == 3          # lost = P
    assert count_lost([[1, 2, 3]], [[0, 0, 0]], [0])[0] == 0          # only gains: lost = 0, d = P
    with pytest.raises(ValueError, match="one shape"):
        count_lost(a, b[:, :10], cA)
    with pytest.raises(ValueError, match="one class per input"):
        count_lost(a, b, cA[:5])


def test_lost_votes_that_cannot_have_been_counted_against_cA_are_refused():
    from smoothcert.certifier.incremental import certify

    with pytest.raises(ValueError, match="0..min"):
        certify(np.array([[1, 0]]), np.array([[5, 5]]), 10, [11], 10, 1.0, 0.001)   # lost > P
    with pytest.raises(ValueError, match="0..min"):
        certify(np.array([[1, 0]]), np.array([[5, 5]]), 10, [6], 10, 1.0, 0.001)    # lost > the base's count of cA
    with pytest.raises(ValueError, match="0..min"):
        certify(np.array([[1, 0]]), np.array([[5, 5]]), 10, [-1], 10, 1.0, 0.001)


def test_from_paired_labels_lost_not_disagreements_sets_zeta():
    """d > lost (the replay also moves votes between other classes and gains cA votes): zeta is CP_upper(lost, P)."""
    from smoothcert.certifier.incremental import certify, count_lost, predicted_class

    n0, n, P, a = 30, 600, 300, 0.001
    rng = np.random.default_rng(4)
    base = rng.choice(3, size=(1, n0 + n), p=[0.9, 0.06, 0.04])
    replay = base[:, :n0 + P].copy()
    s = replay[:, n0:]
    s[:, :5] = np.where(s[:, :5] == 0, 1, 0)                     # rows 0-4 flipped (lost or gained)
    s[:, 5:40] = np.where(s[:, 5:40] == 1, 2, np.where(s[:, 5:40] == 2, 1, s[:, 5:40]))   # swaps 1 <-> 2
    c0 = np.bincount(base[0, :n0], minlength=3)
    c = np.bincount(base[0, n0:], minlength=3)
    cA = ref_top1(list(c0))
    lost = ref_lost(base[:, n0:n0 + P].tolist(), s.tolist(), [cA])[0]
    d = ref_disagreements(base[:, n0:n0 + P].tolist(), s.tolist())[0]
    assert cA == 0 and 0 < lost < d
    got_lost = count_lost(base[:, n0:n0 + P], s, predicted_class(c0[None]))
    assert got_lost[0] == lost
    pred, rad, pA, zeta = certify(c0[None], c[None], n, got_lost, P, 0.5, a)
    assert (pred[0], rad[0], pA[0], zeta[0]) == pytest.approx(ref_incremental(list(c0), list(c), lost, P, 0.5, a),
                                                              rel=1e-10, abs=1e-14)
    assert zeta[0] < ref_cp_upper(d, P, a)                        # never looser than the bound on every disagreement


# ----------------------------------------------------------- end to end (CLI)
N, M, N0, NB, P = 6, 4, 20, 400, 150
PAIRED_ATTRS = {"seed": 7, "noise_scheme": "smoothcert-splitmix-bm-v1", "indices": "0:6:1", "data_fingerprint": "d" * 64}


def _labels(seed=0, flip=0.05):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, M, N)
    top = rng.uniform(0.55, 0.98, N)
    base = np.empty((N, N0 + NB), np.int64)
    for i in range(N):
        p = np.full(M, (1 - top[i]) / (M - 1))
        p[y[i]] = top[i]
        base[i] = rng.choice(M, N0 + NB, p=p)
    replay = base[:, :N0 + P].copy()
    ch = rng.random(replay.shape) < flip
    replay[ch] = rng.integers(0, M, ch.sum())
    replay[1] = base[1, :N0 + P]                      # one input replays without any disagreement
    replay[2, N0:] = (base[2, N0:N0 + P] + 1) % M     # one input disagrees on every paired row (d = P)
    return y, base, replay


def _probs(labels, seed):
    rng = np.random.default_rng(seed)
    return np.stack([rows_from_labels(l, M, rng) for l in labels])


def _seal(path, **attrs):
    from smoothcert.store import open_store

    with open_store(path, mode="a") as st:
        st.set_attrs(**attrs)


def _record_replay(out, base):
    from smoothcert.store import open_store

    with open_store(base) as b:
        fp = b.fingerprint()
    _seal(out, replay_of={"location": str(base), "fingerprint": fp})


def _pair(make_store, tmp_path, tag, base_labels=None, replay_labels=None, base_attrs=None, base_n0=N0,
          base_idx=None, y=None, record=True):
    y0, b, r = _labels()
    b = b if base_labels is None else base_labels
    r = r if replay_labels is None else replay_labels
    y = y0 if y is None else y
    idx = np.arange(len(y)) if base_idx is None else base_idx
    base = make_store(_probs(b, 1), y, base_n0, name=f"{tag}-base", idx=idx)
    out = make_store(_probs(r, 2), y0, N0, name=f"{tag}-out", idx=np.arange(len(y0)))
    _seal(base, **{**PAIRED_ATTRS, **(base_attrs or {})})
    _seal(out, **PAIRED_ATTRS)
    if record:
        _record_replay(out, base)
    return base, out


def _run(args):
    from faultkit import invoke

    return invoke(args)


def test_cli_incremental_equals_reference_and_records_confidence(make_store, tmp_path):
    import pandas as pd

    _y, b, r = _labels()
    base, out = _pair(make_store, tmp_path, "ok")
    for joint in (False, True):
        tab = tmp_path / f"inc{int(joint)}.csv"
        code, _stdout, stderr, exc = _run(["certify", out, "--method", "incremental", "--base", base, "--out", tab, "-q"]
                                         + (["--joint-alpha"] if joint else []))
        assert code == 0 and exc is None, stderr
        t = pd.read_csv(tab)
        meta = json.loads((tmp_path / f"inc{int(joint)}.csv.meta.json").read_text())
        a = 0.001 / 2 if joint else 0.001
        assert meta["confidence"] == pytest.approx(1 - 0.001 if joint else 1 - 0.002)
        assert list(t.columns) == ["idx", "label", "method", "predict", "radius", "correct", "p_lower",
                                   "rows_used", "zeta", "disagreements", "lost"]
        d = ref_disagreements(b[:, N0:N0 + P].tolist(), r[:, N0:].tolist())
        cA = [ref_top1(list(np.bincount(b[i, :N0], minlength=M))) for i in range(N)]
        lost = ref_lost(b[:, N0:N0 + P].tolist(), r[:, N0:].tolist(), cA)
        assert d[1] == 0 and d[2] == P and lost[1] == 0 and sum(lost) < sum(d)
        for i in range(N):
            c0 = np.bincount(b[i, :N0], minlength=M)
            c = np.bincount(b[i, N0:], minlength=M)
            rp, rr, rpA, rz = ref_incremental(list(c0), list(c), lost[i], P, 0.25, a)
            row = t.iloc[i]
            assert (row["predict"], row["disagreements"], row["lost"], row["rows_used"]) == (rp, d[i], lost[i], P)
            assert row["radius"] == pytest.approx(rr, rel=1e-10, abs=1e-12)
            assert row["p_lower"] == pytest.approx(rpA, rel=1e-10) and row["zeta"] == pytest.approx(rz, rel=1e-10)
        assert t.iloc[2]["lost"] == np.sum(b[2, N0:N0 + P] == cA[2])  # d = P: every cA vote of the P rows is lost
        assert meta["incremental"]["rows_used"] == P
        assert meta["incremental"]["lost_rate_mean"] == pytest.approx(np.mean(np.array(lost) / P), rel=1e-12)
        with __import__("smoothcert.store", fromlist=["open_store"]).open_store(base) as st:
            assert meta["incremental"]["base_fingerprint"] == st.fingerprint()


def test_cli_n_use_pairs_only_the_first_rows(make_store, tmp_path):
    import pandas as pd

    _y, b, r = _labels()
    base, out = _pair(make_store, tmp_path, "nuse")
    tab = tmp_path / "inc.csv"
    code, _, stderr, _ = _run(["certify", out, "--method", "incremental", "--base", base, "--n-use", 40, "--out", tab, "-q"])
    assert code == 0, stderr
    t = pd.read_csv(tab)
    d = ref_disagreements(b[:, N0:N0 + 40].tolist(), r[:, N0:N0 + 40].tolist())
    cA = [ref_top1(list(np.bincount(b[i, :N0], minlength=M))) for i in range(N)]
    lost = ref_lost(b[:, N0:N0 + 40].tolist(), r[:, N0:N0 + 40].tolist(), cA)
    assert list(t["disagreements"]) == d and list(t["lost"]) == lost and set(t["rows_used"]) == {40}


def test_cli_n_use_list_certifies_each_prefix_at_alpha_over_the_list(make_store, tmp_path):
    """--n-use 40,150: one certificate per prefix, both bounds at alpha / 2 (section 11's Bonferroni split over the list)."""
    import pandas as pd

    _y, b, r = _labels()
    base, out = _pair(make_store, tmp_path, "nlist")
    tab = tmp_path / "inc.csv"
    code, _, stderr, _ = _run(["certify", out, "--method", "incremental", "--base", base, "--n-use", "40,150",
                               "--out", tab, "-q"])
    assert code == 0, stderr
    t = pd.read_csv(tab)
    assert list(t["n_use"]) == [40, 150] * N and list(t["rows_used"]) == [40, 150] * N
    for (i, t_use), row in zip([(i, t_use) for i in range(N) for t_use in (40, 150)], t.itertuples()):
        c0, c = np.bincount(b[i, :N0], minlength=M), np.bincount(b[i, N0:], minlength=M)
        lost = ref_lost([b[i, N0:N0 + t_use].tolist()], [r[i, N0:N0 + t_use].tolist()], [ref_top1(list(c0))])[0]
        rp, rr, rpA, rz = ref_incremental(list(c0), list(c), lost, t_use, 0.25, 0.001 / 2)
        assert (row.predict, row.lost) == (rp, lost)
        assert (row.radius, row.p_lower, row.zeta) == pytest.approx((rr, rpA, rz), rel=1e-10, abs=1e-12)
    meta = json.loads((tmp_path / "inc.csv.meta.json").read_text())
    assert meta["confidence"] == pytest.approx(0.998) and meta["prefixes"]["split"] == 2


def test_report_shows_incremental_and_direct_side_by_side(make_store, tmp_path):
    base, out = _pair(make_store, tmp_path, "rep")
    inc, direct = tmp_path / "inc.csv", tmp_path / "direct.csv"
    assert _run(["certify", out, "--method", "incremental", "--base", base, "--out", inc, "-q"])[0] == 0
    assert _run(["certify", out, "--method", "cohen", "--out", direct, "-q"])[0] == 0
    code, stdout, stderr, exc = _run(["report", inc, direct, "--radii", "0,0.25"])
    assert code == 0 and exc is None, stderr
    sec = stdout[stdout.index("incremental certification"):]
    lines = sec.splitlines()
    assert any(l.split()[:2] == ["incremental", str(inc)] for l in lines)
    assert any(l.split()[:2] == ["cohen", str(direct)] for l in lines)
    assert "incremental vs direct (6 inputs): same prediction" in sec
    # a report of the direct table alone has no incremental section
    code, stdout, _, _ = _run(["report", direct])
    assert code == 0 and "incremental certification" not in stdout


def _refused(args, tab, *needles):
    from faultkit import assert_one_line_error

    code, _, stderr, exc = _run(args)
    line = assert_one_line_error(code, stderr, exc, what=" ".join(map(str, args)))
    for s in needles:
        assert s in line, line
    assert not tab.exists() and not (tab.parent / (tab.name + ".meta.json")).exists()
    return line


@pytest.mark.parametrize("key,value,label", [
    ("sigma", 0.5, "sigma 0.5 in BASE, 0.25 in STORE"),
    ("seed", 8, "seed 8 in BASE, 7 in STORE"),
    ("noise_scheme", "other-noise", "noise scheme other-noise in BASE"),
    ("indices", "0:12:2", "indices 0:12:2 in BASE, 0:6:1 in STORE"),
    ("data_fingerprint", "e" * 64, "data fingerprint eeeeeeeeeeee... in BASE"),
])
def test_each_metadata_mismatch_is_refused_in_one_line_with_nothing_written(make_store, tmp_path, key, value, label):
    base, out = _pair(make_store, tmp_path, key, base_attrs={key: value})  # replay_of records the changed BASE
    tab = tmp_path / "t.csv"
    _refused(["certify", out, "--method", "incremental", "--base", base, "--out", tab], tab, label,
             f"--base {base} does not match store {out}")


def test_other_n0_other_classes_other_input_count_and_other_slots_are_refused(make_store, tmp_path):
    y, b, r = _labels()
    tab = tmp_path / "t.csv"
    base, out = _pair(make_store, tmp_path, "n0", base_n0=N0 + 5)
    _refused(["certify", out, "--method", "incremental", "--base", base, "--out", tab], tab, "n0 25 in BASE, 20 in STORE")
    # a base with a fifth class (the same hard labels, rows of width 5)
    rng = np.random.default_rng(1)
    base5 = make_store(np.stack([rows_from_labels(l, M + 1, rng) for l in b]), y, N0, name="m5-base")
    _seal(base5, **PAIRED_ATTRS)
    out5 = make_store(_probs(r, 2), y, N0, name="m5-out")
    _seal(out5, **PAIRED_ATTRS)
    _record_replay(out5, base5)
    _refused(["certify", out5, "--method", "incremental", "--base", base5, "--out", tab], tab,
             "number of classes 5 in BASE, 4 in STORE")
    base_few = make_store(_probs(b[:5], 1), y[:5], N0, name="few-base")
    _seal(base_few, **PAIRED_ATTRS)
    out_few = make_store(_probs(r, 2), y, N0, name="few-out")
    _seal(out_few, **PAIRED_ATTRS)
    _record_replay(out_few, base_few)
    _refused(["certify", out_few, "--method", "incremental", "--base", base_few, "--out", tab], tab,
             "number of inputs 5 in BASE, 6 in STORE")
    perm = np.array([1, 0, 2, 3, 4, 5])
    base_p, out_p = _pair(make_store, tmp_path, "perm", base_labels=b[perm], y=y[perm], base_idx=perm)
    _refused(["certify", out_p, "--method", "incremental", "--base", base_p, "--out", tab], tab,
             "slot 0 holds dataset index 1 in BASE, 0 in STORE")


def test_P_larger_than_base_n_is_refused(make_store, tmp_path):
    _y, b, _r = _labels()
    base, out = _pair(make_store, tmp_path, "short", base_labels=b[:, :N0 + 100])
    tab = tmp_path / "t.csv"
    _refused(["certify", out, "--method", "incremental", "--base", base, "--out", tab], tab,
             "pairs P = 150 estimation rows, BASE holds only n = 100")
    # --n-use within the base's n pairs the first rows only and is accepted
    code, _, stderr, _ = _run(["certify", out, "--method", "incremental", "--base", base, "--n-use", 100, "--out", tab, "-q"])
    assert code == 0, stderr


def test_changed_or_other_base_is_refused_by_fingerprint(make_store, tmp_path):
    y, b, _r = _labels()
    base, out = _pair(make_store, tmp_path, "fp")
    other = make_store(_probs(b, 9), y, N0, name="fp-other")  # the same labels and settings, other stored rows
    _seal(other, **PAIRED_ATTRS)
    tab = tmp_path / "t.csv"
    line = _refused(["certify", out, "--method", "incremental", "--base", other, "--out", tab], tab,
                    "BASE's fingerprint is", "with fingerprint", "(BASE changed since, or is another store)")
    assert str(base) in line  # names the base the replay store recorded
    _seal(base, note="edited after the replay")
    _refused(["certify", out, "--method", "incremental", "--base", base, "--out", tab], tab, "BASE's fingerprint is")


def test_store_without_replay_record_missing_base_and_incomplete_base_are_refused(make_store, tmp_path):
    from smoothcert.store import create_store, open_store

    y, b, _r = _labels()
    base, out = _pair(make_store, tmp_path, "norec", record=False)
    tab = tmp_path / "t.csv"
    _refused(["certify", out, "--method", "incremental", "--base", base, "--out", tab], tab,
             "records no 'replay_of'", "--method cohen")
    _refused(["certify", out, "--method", "incremental", "--out", tab], tab, "--method incremental needs --base BASE")
    _seal(out, replay_of="somewhere")
    _refused(["certify", out, "--method", "incremental", "--base", base, "--out", tab], tab,
             "'replay_of' must be {location, fingerprint}")
    # a base with one input never written
    with open_store(base) as st:
        attrs = {k: v for k, v in st.attrs.items() if k not in ("n_inputs", "n0", "n", "num_classes", "sigma", "dtype",
                                                                  "members", "core_predict", "format", "format_version")}
    part = create_store(tmp_path / "part-base", n_inputs=N, n0=N0, n=NB, num_classes=M, sigma=0.25, dtype="float32",
                        metadata=attrs)
    probs = _probs(b, 1)
    for i in range(N - 1):
        part.write_input(i, rows=probs[i], label=int(y[i]), idx=i)
    part.close()
    _record_replay(out, tmp_path / "part-base")
    _refused(["certify", out, "--method", "incremental", "--base", tmp_path / "part-base", "--out", tab], tab,
             "input slot 5 is incomplete")


def test_ensemble_options_are_refused(make_store, tmp_path):
    y, b, r = _labels()
    pb, pr = _probs(b, 1), _probs(r, 2)
    base = make_store(pb, y, N0, name="ens-base", member_probs=np.stack([pb, pb], axis=2))
    out = make_store(pr, y, N0, name="ens-out", member_probs=np.stack([pr, pr], axis=2))
    _seal(base, **PAIRED_ATTRS)
    _seal(out, **PAIRED_ATTRS)
    _record_replay(out, base)
    tab = tmp_path / "t.csv"
    _refused(["certify", out, "--method", "incremental", "--base", base, "--consensus", 1, "--out", tab], tab,
             "--members/--consensus are not supported")
    code, _, stderr, _ = _run(["certify", out, "--method", "incremental", "--base", base, "--out", tab, "-q"])
    assert code == 0, stderr  # without them the stored (ensemble) hard labels are compared


def test_unchanged_model_replayed_through_the_sampler_has_no_disagreements(tmp_path):
    """The demo CNN sampled twice on the same seed and indices (n = P the second time): d = 0 on every input."""
    import pandas as pd

    from smoothcert.sampler.run import sample
    from smoothcert.sampler.train import CHECKPOINT, digits_split

    _, (x, yy) = digits_split()
    np.savez(tmp_path / "d.npz", x=x[:4], y=yy[:4])
    kw = dict(models=["smoothcert.sampler.train:digits_cnn"], weights=[str(CHECKPOINT)], data=str(tmp_path / "d.npz"),
              sigma=0.25, n0=10, batch_size=100, seed=3, device="cpu", progress=False, log=lambda s: None)
    sample(str(tmp_path / "base"), n=300, **kw)
    sample(str(tmp_path / "same"), n=80, **kw)
    _record_replay(tmp_path / "same", tmp_path / "base")
    tab = tmp_path / "t.csv"
    code, _, stderr, _ = _run(["certify", tmp_path / "same", "--method", "incremental", "--base", tmp_path / "base",
                               "--out", tab, "-q"])
    assert code == 0, stderr
    t = pd.read_csv(tab)
    assert (t["disagreements"] == 0).all() and (t["lost"] == 0).all() and (t["rows_used"] == 80).all()


# ----------------------------------------------------------- model variants
@pytest.mark.parametrize("name", ["int8", "pruned", "finetuned"])
def test_each_model_variant_is_a_model_spec_that_samples_and_stays_accurate(name, tmp_path):
    import torch

    from smoothcert.sampler import variants as V
    from smoothcert.sampler.models import load_model
    from smoothcert.sampler.run import sample
    from smoothcert.sampler.train import digits_split

    spec = V.VARIANTS[name]
    lm = load_model(spec)
    base = V.digits_cnn_base()
    _, (x, yy) = digits_split()
    with torch.no_grad():
        xb = torch.from_numpy(x[:64])
        assert not torch.equal(lm.module(xb), base(xb))  # it is a changed model
    assert V.clean_accuracy(lm.module) >= 0.95
    assert load_model(spec).fingerprint == lm.fingerprint  # the same weights on every call
    np.savez(tmp_path / "d.npz", x=x[:2], y=yy[:2])
    res = sample(str(tmp_path / "s"), models=[spec], data=str(tmp_path / "d.npz"), sigma=0.25, n0=5, n=40,
                 batch_size=45, seed=0, device="cpu", progress=False, log=lambda s: None)
    assert res.n_inputs == 2


def test_pruned_variant_has_thirty_percent_zero_weights():
    import torch

    from smoothcert.sampler.variants import digits_cnn_pruned

    net = digits_cnn_pruned()
    w = [m.weight for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    zeros = sum(int((t == 0).sum()) for t in w)
    total = sum(t.numel() for t in w)
    assert zeros == round(0.3 * total)


def test_table_does_not_depend_on_blocks_verify_mode_or_compact_layout(make_store, tmp_path, monkeypatch):
    import pandas as pd

    from smoothcert.certifier import methods_incremental
    from smoothcert.store.compact import compact_store

    base, out = _pair(make_store, tmp_path, "blocks")
    ref = tmp_path / "ref.csv"
    assert _run(["certify", out, "--method", "incremental", "--base", base, "--out", ref, "-q"])[0] == 0
    want = pd.read_csv(ref)
    monkeypatch.setattr(methods_incremental, "BASE_BLOCK_BYTES", 1)  # one base input per read
    for extra in (["--block-size", 4], ["--verify", "used"]):
        tab = tmp_path / "t.csv"
        code, _, stderr, _ = _run(["certify", out, "--method", "incremental", "--base", base, "--out", tab, "-q"] + extra)
        assert code == 0, stderr
        pd.testing.assert_frame_equal(pd.read_csv(tab), want)
    # compact copies of both (every input verified on the way) pair and certify alike
    compact_store(str(base), str(tmp_path / "cbase"), topk=2)
    compact_store(str(out), str(tmp_path / "cout"), topk=2)
    _record_replay(tmp_path / "cout", tmp_path / "cbase")
    tab = tmp_path / "c.csv"
    code, _, stderr, _ = _run(["certify", tmp_path / "cout", "--method", "incremental", "--base", tmp_path / "cbase",
                               "--out", tab, "-q"])
    assert code == 0, stderr
    pd.testing.assert_frame_equal(pd.read_csv(tab), want)
