"""``--method conformal`` against the independent reference of ``conformal_reference.py``, on real stores.

Every comparison certifies a real store (full rows, float32 or float16, or
its compact copy) through the engine, and recomputes each test input's set
from the store's rows with the reference: equal sets for hps and aps,
rscp+ and cas, bernstein and hoeffding, a split and a calibration store,
several miscoverage levels and radii, and an ``--n-use`` list. Memberships
within 1e-9 of their boundary are left out. Then the edge cases and the
compact-store relations of docs/methods.md section 12.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conformal_reference import calibration_scores, compact_values, reference_sets, scores, split
from smoothcert.certifier import CertifyOptions, certify
from smoothcert.store import open_store

M, N0, N = 5, 10, 120
SIGMA = 0.25


def make_probs(n_inputs, seed, m=M, n=N, lo=1.0, hi=6.0):
    """Rows like a classifier's under noise: the label's logit raised by an input-specific strength, a runner-up."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, m, n_inputs)
    R = N0 + n
    logits = rng.normal(0, 1.0, (n_inputs, R, m))
    strength = rng.uniform(lo, hi, n_inputs)
    logits[np.arange(n_inputs), :, labels] += strength[:, None]
    runner = (labels + 1) % m
    logits[np.arange(n_inputs), :, runner] += 0.5 * strength[:, None]
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32), labels


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A 60-input store (float32), its float16 twin, a 40-input calibration store, and compact copies (top 2, top M)."""
    from smoothcert.store.compact import compact_store
    from smoothcert.store.importer import import_npz

    root = tmp_path_factory.mktemp("conformal")
    out = {}
    for name, n_inputs, seed, dtype in (("test", 60, 1, "float32"), ("half", 60, 1, "float16"),
                                        ("cal", 40, 2, "float32")):
        probs, labels = make_probs(n_inputs, seed)
        src = root / f"{name}.npz"
        np.savez(src, probs=probs, labels=labels, idx=np.arange(n_inputs) * 3 + (0 if name != "cal" else 1000))
        import_npz(src, root / name, sigma=SIGMA, n0=N0, dtype=dtype)
        out[name] = root / name
    for name in ("test", "cal"):
        for k in (2, M):
            compact_store(str(out[name]), str(root / f"{name}-top{k}"), topk=k)
            out[f"{name}-top{k}"] = root / f"{name}-top{k}"
    return out


def read_inputs(path):
    """Per input (slot order): idx, label, test-side rows (N, m) and calibration-side rows (N, m), as the reference
    reads them: full rows, or the lower/upper values of a compact store."""
    with open_store(path) as st:
        if st.layout.has_full_rows:
            d = st.read_block(0, st.n_inputs, fields=("rows",))
            rows = d["rows"][:, st.n0:]
            return d["idx"], d["label"], rows, rows
        d = st.read_block(0, st.n_inputs, fields=("compact",))
        lo, up = zip(*(compact_values(d["topk_p"][i, st.n0:], d["topk_c"][i, st.n0:], st.num_classes)
                       for i in range(st.n_inputs)))
        return d["idx"], d["label"], np.array(up), np.array(lo)


def reference(store, opts: CertifyOptions, cal_store=None):
    """{(idx, n_use, m, eps, variant): (set, edge classes, tau)} from the reference."""
    idx, label, test_rows, cal_rows = read_inputs(store)
    n = test_rows.shape[1]
    u = {int(i): np.random.default_rng([opts.aps_seed, int(i)]).random() for i in idx}
    if cal_store is None:
        cpos, tpos = split(idx, opts.calibration_split, opts.split_seed)
        cal = [scores(cal_rows[p], opts.score, u[int(idx[p])])[:, label[p]] for p in sorted(cpos)]
    else:
        cidx, clab, _, crows = read_inputs(cal_store)
        tpos = range(len(idx))
        cal = [scores(crows[p], opts.score, np.random.default_rng([opts.aps_seed, int(cidx[p])]).random())[:, clab[p]]
               for p in range(len(cidx))]
    test = {p: scores(test_rows[p], opts.score, u[int(idx[p])]) for p in tpos}
    prefixes = opts.n_use if isinstance(opts.n_use, list) else [opts.n_use or n]
    out = {}
    for t in prefixes:
        for eps in opts.epsilon:
            for v in opts.robust:
                E = calibration_scores(cal, N=t, eps=eps, variant=v, sigma=SIGMA, alpha=opts.alpha)
                for m in opts.miscoverage:
                    sets, tau = reference_sets(test, E, N=t, miscoverage=m, eps=eps, variant=v,
                                               bound=opts.mean_bound, sigma=SIGMA, alpha=opts.alpha)
                    for p, (s, edge) in sets.items():
                        out[(int(idx[p]), t, m, eps, v)] = (s, edge, tau)
    return out


def compare(table, ref, opts, listed=False):
    """Every row's set equals the reference's (edge classes aside); returns how many memberships were compared."""
    assert len(table) == len(ref)
    compared = 0
    for row in table.itertuples(index=False):
        t = row.n_use if listed else (opts.n_use or N)
        variant = getattr(row, "robust", opts.robust[0])   # a column only when several variants are listed
        want, edge, tau = ref[(row.idx, t, row.miscoverage, row.epsilon, variant)]
        got = {int(c) for c in row.set.split()} if row.set else set()
        assert got - edge == want - edge, (row, want, edge)
        assert row.tau == pytest.approx(tau, rel=1e-12, abs=1e-15) or (math.isinf(tau) and row.tau == tau)
        assert row.set_size == len(got) and row.correct == int(row.label in got)
        assert row.predict == (next(iter(got)) if len(got) == 1 else -1) and row.radius == row.epsilon
        compared += M - len(edge)
    return compared


CASES = [
    dict(score="hps", robust=["rscp+", "cas"], mean_bound="bernstein", miscoverage=[0.1, 0.3], epsilon=[0.0, 0.1]),
    dict(score="aps", robust=["rscp+", "cas"], mean_bound="hoeffding", miscoverage=[0.2], epsilon=[0.0, 0.25],
         aps_seed=3),
    dict(score="hps", robust=["cas"], mean_bound="hoeffding", miscoverage=[0.15], epsilon=[0.05], n_use=[30, 120]),
    dict(score="aps", robust=["rscp+"], mean_bound="bernstein", miscoverage=[0.25], epsilon=[0.125], n_use=[2, 60]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_sets_equal_the_reference_on_a_split_of_one_store(stores, case):
    opts = CertifyOptions(calibration_split=0.4, split_seed=case, alpha=0.01, **CASES[case])
    table, meta = certify(stores["test"], "conformal", opts, progress=False)
    listed = "n_use" in CASES[case]
    assert compare(table, reference(stores["test"], opts), opts, listed) > 0.9 * len(table) * M
    assert (table["n_cal"] == 24).all() and table["idx"].nunique() == 36
    assert meta["conformal"]["split"] == {"kind": "calibration-split", "fraction": 0.4, "split_seed": case,
                                          "n_cal": 24, "n_test": 36}


@pytest.mark.parametrize("case", [0, 1])
def test_sets_equal_the_reference_with_a_calibration_store(stores, case):
    opts = CertifyOptions(calibration=str(stores["cal"]), alpha=0.01, **CASES[case])
    table, meta = certify(stores["test"], "conformal", opts, progress=False)
    assert compare(table, reference(stores["test"], opts, stores["cal"]), opts) > 0.9 * len(table) * M
    assert (table["n_cal"] == 40).all() and table["idx"].nunique() == 60
    with open_store(stores["cal"]) as cal:
        assert meta["calibration"] == {"store": str(stores["cal"]), "store_fingerprint": cal.fingerprint(),
                                       "n_inputs": 40}


@pytest.mark.parametrize("bound", ["bernstein", "hoeffding"])
def test_compact_sets_equal_the_reference_on_the_bounded_values(stores, bound):
    opts = CertifyOptions(calibration_split=0.5, alpha=0.01, robust=["rscp+", "cas"], mean_bound=bound,
                          miscoverage=[0.1, 0.3], epsilon=[0.0, 0.1])
    table, meta = certify(stores["test-top2"], "conformal", opts, progress=False)
    assert meta["compact"]["certificate"] == "bounded"
    compare(table, reference(stores["test-top2"], opts), opts)
    _, label, _, _ = read_inputs(stores["test"])
    with open_store(stores["test-top2"]) as st:
        d = st.read_block(0, st.n_inputs, fields=("compact",))
    lacking = {int(i): int((d["topk_c"][s, N0:] != label[s]).all(axis=1).sum()) for s, i in enumerate(d["idx"])}
    assert (table["rows_bounded"] == table["idx"].map(lacking)).all() and table["rows_bounded"].max() > 0
    # and with a compact calibration store
    opts2 = opts.replace(calibration=str(stores["cal-top2"]), calibration_split=None)
    t2, _ = certify(stores["test-top2"], "conformal", opts2, progress=False)
    compare(t2, reference(stores["test-top2"], opts2, stores["cal-top2"]), opts2)


def as_sets(table):
    return [set(map(int, s.split())) for s in table["set"]]


def test_under_hoeffding_every_compact_set_contains_the_full_stores_and_with_k_equal_m_they_are_equal(stores):
    opts = CertifyOptions(calibration_split=0.5, alpha=0.01, robust=["rscp+", "cas"], mean_bound="hoeffding",
                          miscoverage=[0.1, 0.2, 0.4], epsilon=[0.0, 0.1, 0.3])
    full, _ = certify(stores["test"], "conformal", opts, progress=False)
    top2, _ = certify(stores["test-top2"], "conformal", opts, progress=False)
    topm, _ = certify(stores[f"test-top{M}"], "conformal", opts, progress=False)
    f, c = as_sets(full), as_sets(top2)
    assert all(a <= b for a, b in zip(f, c)) and sum(len(b) - len(a) for a, b in zip(f, c)) > 0
    cols = ["idx", "miscoverage", "epsilon", "robust", "predict", "correct", "set", "set_size", "tau"]
    assert topm[cols].equals(full[cols]) and (topm["rows_bounded"] == 0).all()
    for bound in ("bernstein",):   # K = m: equal under bernstein too
        o = opts.replace(mean_bound=bound)
        a, _ = certify(stores["test"], "conformal", o, progress=False)
        b, _ = certify(stores[f"test-top{M}"], "conformal", o, progress=False)
        assert a[cols].equals(b[cols])


def test_float16_rows_are_read_as_stored(stores):
    opts = CertifyOptions(calibration_split=0.5, alpha=0.01, robust=["rscp+", "cas"], score="aps",
                          miscoverage=[0.2], epsilon=[0.0, 0.1])
    table, _ = certify(stores["half"], "conformal", opts, progress=False)
    compare(table, reference(stores["half"], opts), opts)


# ------------------------------------------------------------------------------------ edge cases
def test_edge_cases_of_the_pure_functions():
    from scipy import stats

    from conformal_reference import cas_score
    from smoothcert.certifier import conformal as C

    # k < 1: tau = -inf and every class is in
    assert C.calibration_threshold([0.5] * 8, 0.1, 0.001) == -math.inf       # floor(9 * 0.098) = 0
    assert C.calibration_threshold(np.arange(9.0), 0.2, 0.0) == 1.0          # floor(10 * 0.2) = 2: 2nd smallest
    assert C.in_set(np.array([0.0, 0.3]), -math.inf, "rscp+").all()
    assert C.in_set(np.array([0.0, 0.3]), -math.inf, "cas").all()
    # the float64 product, as written: (n_cal + 1) (m - 2a) just below an integer floors down
    k = math.floor((9 + 1) * (0.3 - 2 * 0.05))
    assert k == 1 and C.calibration_threshold(np.arange(9.0), 0.3, 0.05) == 0.0
    # U = 1: Phi^-1(1) = +inf is in whatever tau; tau - b_H <= 0: Phi^-1(0) = -inf lets every class in
    assert C.in_set(np.array([1.0]), 0.99, "rscp+", 0.0, 0.25, 100, 0.001).all()
    bH = C.hoeffding_half(100, 0.001)
    assert C.in_set(np.array([1e-300]), bH, "rscp+", 0.0, 0.25, 100, 0.001).all()
    assert not C.in_set(np.array([1e-3]), bH + 0.01, "rscp+", 0.0, 0.25, 100, 0.001).any()
    assert C.upper_mean(np.array([0.99]), np.array([0.1]), 50, 0.001).tolist() == [1.0]
    assert C.upper_mean(np.array([0.2]), np.array([0.0]), 1, 0.001, "bernstein").tolist() == [1.0]
    # the cas score: the reference's sum, and for one value the closed form
    rng = np.random.default_rng(0)
    for c in (rng.random(50), np.round(rng.random(40), 1), np.zeros(10), np.ones(10)):
        got = C.cas_lower(c, np.array([0.0, 0.4, 2.0]), 0.01)
        want = [cas_score(c, e, 1.0, 0.01) for e in (0.0, 0.4, 2.0)]
        assert np.allclose(got, want, rtol=1e-12, atol=1e-15)
        assert (np.diff(got) <= 0).all()
    e = math.sqrt(math.log(100) / 20)     # ten equal scores 0.7: one step, F(0) = 0, F(0.7) = 1
    assert C.cas_lower(np.full(10, 0.7), [0.0], 0.01)[0] == pytest.approx(0.7 * (1 - e), rel=1e-12)
    assert C.cas_lower(np.full(10, 0.7), [0.5], 0.01)[0] == pytest.approx(0.7 * stats.norm.sf(stats.norm.ppf(e) + 0.5),
                                                                         rel=1e-12)


def test_aps_scores_rows_summing_above_one_ties_and_clipping():
    from smoothcert.certifier import conformal as C

    from conformal_reference import scores

    rows = np.array([[[0.3, 0.3, 0.2, 0.2], [0.6, 0.3, 0.1, 0.0], [0.5, 0.5, 0.01, 0.0], [0.25, 0.25, 0.25, 0.25]]],
                    np.float32)
    rows[0, 2] = [0.5, 0.5, 0.01, 0.0]   # sums to 1.01: the last classes' aps score is clipped at 0
    for u in (0.0, 0.37, 1.0):
        mean, var = C.score_mean_var(rows, 0, 4, "aps", [u])
        ref = scores(rows[0], "aps", u)
        assert np.allclose(mean[0], ref.mean(0), rtol=0, atol=1e-15) and np.allclose(var[0], ref.var(0, ddof=1))
        z = C.label_scores(rows, [1], 0, 4, "aps", [u])
        assert np.array_equal(z[0], ref[:, 1])
    ref = scores(rows[0], "aps", 1.0)
    assert ref[2, 3] == 0.0 and ref[2, 2] == 0.0    # 1 - (1.0 + 0.01): clipped
    assert ref[0, 0] > ref[0, 1] and ref[3, 0] > ref[3, 3]   # ties: the lower class ranks first
    assert C.aps_u(0, [5])[0] == np.random.default_rng([0, 5]).random()


def test_a_label_that_no_row_predicts_gets_a_sound_set(make_store):
    """Label 3 is never any row's argmax: its calibration scores are low, so tau is low and test sets are large
    enough to contain it at the promised rate; the reference agrees."""
    probs, labels = make_probs(30, 7, m=4)
    labels[:] = 3
    probs[:, :, 3] = 0.5 * probs[:, :, :3].min(axis=-1)    # below every other class in every row
    probs /= probs.sum(-1, keepdims=True)
    store = make_store(probs, labels, N0, sigma=SIGMA)
    opts = CertifyOptions(calibration_split=0.5, alpha=0.01, robust=["rscp+", "cas"], miscoverage=[0.2])
    with open_store(store) as st:
        assert (st.read_block(0, 30, fields=("argmax",))["argmax"] != 3).all()
    table, _ = certify(store, "conformal", opts, progress=False)
    assert (table["correct"] == 1).all()
    ref = reference(store, opts)
    for row in table.itertuples(index=False):
        want, edge, _ = ref[(row.idx, N, row.miscoverage, row.epsilon, row.robust)]
        assert set(map(int, row.set.split())) - edge == want - edge


def test_table_round_trips_the_empty_set_through_csv_jsonl_and_parquet(stores, tmp_path):
    from smoothcert.certifier.table import read_table, write_table

    opts = CertifyOptions(calibration_split=0.5, alpha=0.01, robust=["cas"], mean_bound="hoeffding",
                          miscoverage=[0.45], epsilon=[0.0])
    table, meta = certify(stores["test"], "conformal", opts, progress=False)
    table.loc[0, "set"], table.loc[1, "set"] = "", "3"   # an empty set and a singleton that reads like a number
    for suffix in (".csv", ".jsonl", ".parquet"):
        path = tmp_path / f"t{suffix}"
        write_table(table, path, meta)
        back = read_table(path)
        assert back["set"].tolist() == table["set"].tolist(), suffix
        assert json.loads((tmp_path / f"t{suffix}.meta.json").read_text())["conformal"]["split"]["n_cal"] == 30


def test_one_variant_writes_the_interface_columns_and_report_reads_the_variant_from_the_sidecar(stores, tmp_path):
    """One --robust value: the table's columns are exactly idx, label, method, miscoverage, epsilon, predict,
    radius, correct, set, set_size, tau, n_cal (the variant is in the sidecar, not a column); two values add the
    setting column robust after epsilon. Reading the one-variant table back gives the variant from its sidecar."""
    from smoothcert.certifier.table import read_results, write_table

    one, meta = certify(stores["test"], "conformal", CertifyOptions(calibration_split=0.5, robust=["cas"]),
                        progress=False)
    assert list(one.columns) == ["idx", "label", "method", "miscoverage", "epsilon", "predict", "radius", "correct",
                                 "set", "set_size", "tau", "n_cal"]
    assert meta["conformal"]["robust"] == ["cas"]
    write_table(one, tmp_path / "cas.csv", meta)
    back = read_results(tmp_path / "cas.csv")   # what report reads
    assert list(back.columns[3:6]) == ["miscoverage", "epsilon", "robust"] and (back["robust"] == "cas").all()
    two, _ = certify(stores["test"], "conformal", CertifyOptions(calibration_split=0.5, robust=["rscp+", "cas"]),
                     progress=False)
    assert list(two.columns[3:6]) == ["miscoverage", "epsilon", "robust"]
    assert sorted(two["robust"].unique()) == ["cas", "rscp+"]


def test_stored_values_above_one_are_clipped_as_scores_on_full_and_compact_stores(make_store, tmp_path):
    """Section 12 clips every score to [0, 1]: a row may hold 1.0009 where its sum is within the import
    tolerance. The test side's means and variances (full rows, and the upper values of a compact store) are those of
    the clipped values, as the reference computes them, and the sets equal the reference's."""
    from smoothcert.certifier.block import Block
    from smoothcert.certifier.methods_conformal import statistics
    from smoothcert.store.compact import compact_store

    probs, labels = make_probs(30, 21, m=4)
    probs[:, N0::3] = 0.0
    probs[:, N0::3, 0] = 1.0009            # every third estimation row: class 0, stored above 1 (float16: 1.000977)
    labels[:10] = 0
    store = make_store(probs, labels, N0, sigma=SIGMA, dtype="float32")
    compact_store(str(store), str(tmp_path / "top2"), topk=2)
    opts = CertifyOptions(calibration_split=0.5, alpha=0.01, robust=["rscp+", "cas"], miscoverage=[0.2, 0.4],
                          epsilon=[0.0, 0.1])
    for path, fields in ((store, ("rows",)), (tmp_path / "top2", ("compact",))):
        with open_store(path) as st:
            d = st.read_block(0, st.n_inputs, fields=fields)
            block = Block(idx=d["idx"], label=d["label"], n_rows=d["n_rows"], core_predict=d["core_predict"],
                          n0=st.n0, n0_use=st.n0, n_use=st.n, sigma=st.sigma, m=st.num_classes, rows=d.get("rows"),
                          compact={k: d[k] for k in ("topk_p", "topk_c") if k in d} if "topk_p" in d else None)
        assert d["rows" if "rows" in d else "topk_p"].max() > 1.0     # as stored
        got = statistics(block, opts, "store")
        _, _, test_rows, _ = read_inputs(path)                        # the reference's values: clipped
        want = np.array([scores(r).mean(axis=0) for r in test_rows])
        want_var = np.array([scores(r).var(axis=0, ddof=1) for r in test_rows])
        np.testing.assert_allclose(got["mean"][:, 0], want, rtol=1e-12, atol=1e-15, err_msg=str(path))
        np.testing.assert_allclose(got["var"][:, 0], want_var, rtol=1e-9, atol=1e-15, err_msg=str(path))
        for bound in ("bernstein", "hoeffding"):
            opts.mean_bound = bound
            table, _ = certify(path, "conformal", opts, progress=False)
            assert compare(table, reference(path, opts), opts) > 0
