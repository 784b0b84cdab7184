"""Ensembles, K-consensus and member ordering against an independent numpy computation (docs/methods.md section 6)."""
import numpy as np
import pytest
from scipy import stats

from smoothcert.certifier import CertifyOptions, certify

N, N0, NS, K_MEMBERS, M = 16, 20, 300, 3, 5


def ref_cp_lower(k, n, a):
    return 0.0 if k == 0 else stats.beta.ppf(a, k, n - k + 1)


def ref_cohen(lab0, lab, sigma, alpha):
    c0 = [int((lab0 == c).sum()) for c in range(M)]
    cA = sorted(range(M), key=lambda c: (-c0[c], c))[0]
    pA = ref_cp_lower(int((lab == cA).sum()), len(lab), alpha)
    return (-1, 0.0) if pA < 0.5 else (cA, sigma * stats.norm.ppf(pA))


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def member_data(seed=0, strengths=(2.0, 1.0, 0.5)):
    """Logits (N, R, k, m): member l favours the input's label with strength strengths[l]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, M, N)
    logits = rng.standard_normal((N, N0 + NS, K_MEMBERS, M)) * 1.5
    for i in range(N):
        boost = rng.uniform(0, 2)
        for l in range(K_MEMBERS):
            logits[i, :, l, labels[i]] += boost * strengths[l]
    lp = log_softmax(logits).astype(np.float32)
    mean = lp.astype(np.float64).mean(2)
    probs = np.exp(log_softmax(mean)).astype(np.float32)
    return logits, lp, probs, labels


@pytest.fixture(scope="module")
def data():
    return member_data()


@pytest.fixture
def ens_store(make_store, data):
    logits, lp, probs, labels = data
    return make_store(probs, labels, N0, sigma=0.5, member_logprobs=lp)


def run(store, method="cohen", **kw):
    return certify(store, method, CertifyOptions(**kw), progress=False)


def check_against_labels(table, hard, sigma=0.5, alpha=0.001):
    """Every certificate equals the reference Cohen certificate from the reference hard labels (N, R)."""
    for i in range(N):
        p, r = ref_cohen(hard[i, :N0], hard[i, N0:], sigma, alpha)
        assert table.iloc[i]["predict"] == p, i
        assert table.iloc[i]["radius"] == pytest.approx(r, rel=1e-10, abs=1e-12)


def test_one_member_equals_that_member(ens_store, make_store, data):
    logits, lp, probs, labels = data
    for j in range(K_MEMBERS):
        table, meta = run(ens_store, members=[j])
        assert (table["members"] == str(j)).all()
        hard = np.argmax(lp[:, :, j, :].astype(np.float64), axis=-1)
        check_against_labels(table, hard)
    # the same certificates as a store holding that member alone
    single = make_store(np.exp(lp[:, :, 1, :]).astype(np.float32), labels, N0, sigma=0.5, name="member1")
    a, _ = run(ens_store, "two-step", members=[1])
    b, _ = run(single, "two-step")
    cols = ["idx", "predict", "radius", "runner_up"]
    assert a[cols].equals(b[cols])


def test_logit_average_is_argmax_of_summed_logprobs(ens_store, data):
    logits, lp, probs, labels = data
    table, meta = run(ens_store, members=[0, 2])
    assert (table["members"] == "0+2").all() and "consensus" not in table.columns
    summed = lp[:, :, 0, :].astype(np.float64) + lp[:, :, 2, :]
    hard = np.argmax(summed, axis=-1)
    check_against_labels(table, hard)
    # and it is the argmax of the averaged logits (log-softmax shifts each member by a constant)
    assert (np.argmax(logits[:, :, 0] + logits[:, :, 2], axis=-1) == hard).mean() > 0.999
    # the ensemble rows are softmax of the mean logits
    from smoothcert.certifier.ensemble import ensemble_rows

    arg, rows, _, _ = ensemble_rows(lp, [0, 2])
    want = np.exp(log_softmax((logits[:, :, 0] + logits[:, :, 2]) / 2))
    assert np.abs(rows - want).max() < 1e-5
    assert (arg == hard).all()


def test_default_members_are_all(ens_store, data):
    logits, lp, probs, labels = data
    table, meta = run(ens_store, consensus=K_MEMBERS)
    assert (table["members"] == "0+1+2").all() and (table["consensus"] == K_MEMBERS).all()
    check_against_labels(table, np.argmax(lp.astype(np.float64).sum(2), axis=-1))


def test_consensus_k_equals_full_ensemble(ens_store, data):
    logits, lp, probs, labels = data
    full, _ = run(ens_store, members=[2, 0, 1])
    kk, meta = run(ens_store, members=[2, 0, 1], consensus=3)
    assert full[["predict", "radius"]].equals(kk[["predict", "radius"]])
    assert meta["ensemble"]["evaluation_cost"] == 1.0


def test_consensus_one_is_first_member(ens_store, data):
    logits, lp, probs, labels = data
    t1, meta = run(ens_store, members=[2, 0, 1], consensus=1)
    first = np.argmax(lp[:, :, 2, :], axis=-1)
    check_against_labels(t1, first)
    agree = (np.argmax(lp, axis=-1) == first[..., None]).all(-1)
    assert agree.any()
    # where members agree, the full ensemble gives the same label as the first member
    assert (np.argmax(lp.astype(np.float64).sum(2), axis=-1)[agree] == first[agree]).all()
    assert meta["ensemble"]["KCR"] == 1.0
    assert meta["ensemble"]["evaluation_cost"] == pytest.approx(1 / 3)


def test_consensus_two_of_three_against_reference(ens_store, data):
    logits, lp, probs, labels = data
    order = [1, 0, 2]
    table, meta = run(ens_store, members=order, consensus=2)
    assert (table["members"] == "1+0+2").all() and (table["consensus"] == 2).all()
    lab = np.argmax(lp, axis=-1)  # (N, R, k) member hard labels, lowest index on ties
    agree = lab[:, :, 1] == lab[:, :, 0]
    two = np.argmax(lp[:, :, 1, :].astype(np.float64) + lp[:, :, 0, :], axis=-1)
    allk = np.argmax(lp.astype(np.float64).sum(2), axis=-1)
    hard = np.where(agree, two, allk)
    check_against_labels(table, hard)
    assert meta["ensemble"]["KCR"] == pytest.approx(agree.mean())
    assert meta["ensemble"]["evaluation_cost"] == pytest.approx((2 * agree + 3 * ~agree).mean() / 3)


def test_ensemble_with_rows_methods(ens_store, make_store, data):
    """A method that reads rows (aces) sees the ensemble rows: equal to a store of those rows."""
    logits, lp, probs, labels = data
    core = labels.copy()
    st = make_store(probs, labels, N0, sigma=0.5, member_logprobs=lp, core_predict=core, name="withcore")
    ens_rows = np.exp(log_softmax(lp[:, :, [0, 1], :].astype(np.float64).mean(2))).astype(np.float32)
    plain = make_store(ens_rows, labels, N0, sigma=0.5, core_predict=core, name="plainrows")
    a, _ = run(st, "aces", members=[0, 1], theta=[0.3, 0.7])
    b, _ = run(plain, "aces", theta=[0.3, 0.7])
    for c in ("predict", "radius", "selection"):  # (an entropy within float32 rounding of a theta could differ)
        assert (a[c].to_numpy() == b[c].to_numpy()).all(), c
    assert set(a.columns) >= {"members", "theta", "selection"}


def test_order_from_validation_store(make_store, ens_store, data, tmp_path):
    logits, lp, probs, labels = data
    # validation store: member 1 most accurate, then 2, then 0
    vlogits, vlp, vprobs, vlabels = member_data(seed=5, strengths=(0.2, 3.0, 1.0))
    val = make_store(vprobs, vlabels, N0, sigma=0.5, member_logprobs=vlp, name="validation")
    acc = [(np.argmax(vlp[:, :, l], -1) == vlabels[:, None]).mean() for l in range(3)]
    want = sorted(range(3), key=lambda l: (-acc[l], l))
    assert want == [1, 2, 0]
    table, meta = run(ens_store, consensus=2, order_from=str(val))
    assert (table["members"] == "1+2+0").all()
    assert meta["ensemble_members"]["members"] == [1, 2, 0]
    assert meta["ensemble_members"]["member_accuracy"]["1"] == pytest.approx(acc[1])
    # a subset is ordered within itself
    t2, _ = run(ens_store, members=[0, 2], order_from=str(val))
    assert (t2["members"] == "2+0").all()
    # never the certified store itself, nor an identical copy of it
    with pytest.raises(ValueError, match="store being certified"):
        run(ens_store, consensus=2, order_from=str(ens_store))
    copy = make_store(probs, labels, N0, sigma=0.5, member_logprobs=lp, name="copy")  # same arrays
    with pytest.raises(ValueError, match="fingerprint"):
        run(ens_store, consensus=2, order_from=str(copy))


def test_bad_options(ens_store, make_store, data):
    logits, lp, probs, labels = data
    with pytest.raises(ValueError, match="member 3"):
        run(ens_store, members=[0, 3])
    with pytest.raises(ValueError, match="twice"):
        run(ens_store, members=[0, 0])
    with pytest.raises(ValueError, match="consensus"):
        run(ens_store, members=[0, 1], consensus=3)
    plain = make_store(probs, labels, N0, sigma=0.5, name="nomembers")
    with pytest.raises(ValueError, match="per-member"):
        run(plain, members=[0])


def test_cli_members_and_consensus(ens_store, tmp_path):
    import json

    from click.testing import CliRunner

    from smoothcert.cli import main

    out = tmp_path / "e.csv"
    r = CliRunner().invoke(main, ["certify", str(ens_store), "--method", "cohen", "--members", "2,0", "--consensus",
                                  "1", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    head = out.read_text().splitlines()[0].split(",")
    assert head[:6] == ["idx", "label", "method", "members", "consensus", "predict"]
    meta = json.loads((tmp_path / "e.csv.meta.json").read_text())
    assert meta["ensemble"]["KCR"] == 1.0 and meta["ensemble"]["members"] == [2, 0]
