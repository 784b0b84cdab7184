"""``--method conformal``: robust conformal prediction sets (docs/methods.md section 12), its computation.

A set needs every calibration input before any test input (its threshold is
a quantile over all of them), so the method is a step across inputs: per
block of inputs it reduces the rows to small statistics (``statistics``:
per prefix, the mean and variance of every class's score for the test side,
the label's mean score and, for ``cas``, its CDF-based score for the
calibration side), and ``finalize`` turns every block's statistics into the
sets. Calibration inputs come from a second store (``--calibration CAL``,
the engine's reference store) or from a seeded split of STORE
(``--calibration-split F --split-seed S``).

Checked before any row is read, each refused in one line: exactly one of
``--calibration``/``--calibration-split``; F in (0, 1) and a split leaving
both parts non-empty; every miscoverage m > 2 alpha, every epsilon >= 0;
``aps`` on a compact store; an input without a label in 0..m-1 (stores keep
-1 for none); a CAL that differs from STORE in sigma, n0, n, classes, noise
scheme, dtype, model fingerprint or (with ``--members``) ensemble members, or
is STORE itself.

The claim is marginal coverage per (miscoverage, epsilon, n_use) setting;
with an ``--n-use`` list alpha is not split over the prefixes (each set has
its own claim; docs/methods.md section 12 says why splitting would not buy a
simultaneous one). The options and the registration are in
``entries_conformal``; the mathematics is in ``certifier.conformal``.
"""
from __future__ import annotations

import math

import numpy as np


# what must agree between STORE and a calibration store (attribute, words); model fingerprints when both have one
MATCHED = (("sigma", "sigma"), ("n0", "n0"), ("n", "n"), ("num_classes", "number of classes"),
           ("noise_scheme", "noise scheme"), ("dtype", "dtype"))
ENSEMBLE = (("members", "number of ensemble members"),)  # with --members/--consensus: CAL's rows are recombined too
FINGERPRINTS = (("model_fingerprint", "model fingerprint"), ("member_fingerprints", "member model fingerprints"))


# ------------------------------------------------------------------------------ checks
def _prefixes(opts, n: int) -> list[int]:
    from .prefixes import prefix_list

    listed = prefix_list(opts)
    if listed is not None:
        return listed
    return [int(opts.n_use) if opts.n_use is not None else int(n)]


def check_labels(store) -> None:
    """Refuse a store with a complete input whose label is outside 0..m-1 (-1: the store holds no label)."""
    rec = store.read_records()
    bad = np.flatnonzero((rec["complete"] == 1) & ((rec["label"] < 0) | (rec["label"] >= store.num_classes)))
    if len(bad):
        s = int(bad[0])
        raise ValueError(f"--method conformal: input {int(rec['idx'][s])} of store {store.location} has label "
                         f"{int(rec['label'][s])}, not a class in 0..{store.num_classes - 1}; conformal sets need the "
                         f"label of every calibration and test input")


def _value(store, key):
    """A setting of an open store: its property (sigma, n0, n, classes, dtype, members) or its attribute."""
    return getattr(store, key) if key in ("sigma", "n0", "n", "num_classes", "dtype", "members") else store.attrs.get(key)


def check_calibration_store(store, cal, ensemble: bool = False) -> None:
    """Refuse (one line) a calibration store CAL that does not match STORE, or is STORE itself (``ensemble``: the
    member rows are recombined by --members/--consensus, so the members must match too)."""
    where = f"--calibration {cal.location} does not match store {store.location}"
    diffs = []
    for key, words in MATCHED + (ENSEMBLE if ensemble else ()):
        a, b = _value(cal, key), _value(store, key)
        same = float(a) == float(b) if key == "sigma" and a is not None and b is not None else a == b
        if not same:
            diffs.append(f"{words} {a} in CAL, {b} in STORE")
    for key, words in FINGERPRINTS:
        a, b = cal.attrs.get(key), store.attrs.get(key)
        if a is not None and b is not None and a != b:
            diffs.append(f"{words} differ")
    if diffs:
        raise ValueError(f"{where}: " + "; ".join(diffs))
    if cal.fingerprint() == store.fingerprint():
        raise ValueError(f"--calibration {cal.location} holds the same samples as store {store.location} (equal "
                         f"fingerprints); calibrate on other inputs, or use --calibration-split")


def check_options(opts, store=None) -> None:
    """Engine hook, before any work: the split, the levels, the score against the layout, labels, CAL."""
    given = [f for f, v in (("--calibration", opts.calibration), ("--calibration-split", opts.calibration_split))
             if v is not None]
    if len(given) != 1:
        raise ValueError("--method conformal needs exactly one of --calibration CAL and --calibration-split F, got "
                         + (" and ".join(given) if given else "neither"))
    _settings(opts)
    if store is None:
        return
    if opts.score == "aps" and not store.layout.has_full_rows:
        raise ValueError(f"--method conformal --score aps needs full rows (its score ranks every class of a row); "
                         f"store {store.location} is compact: use --score hps")
    if opts.calibration_split is not None:
        n_cal = math.floor(opts.calibration_split * store.n_inputs)
        if not 1 <= n_cal < store.n_inputs:
            raise ValueError(f"--calibration-split {opts.calibration_split:g} of the {store.n_inputs} inputs of store "
                             f"{store.location} leaves {'no calibration' if n_cal < 1 else 'no test'} input")
    check_labels(store)
    if opts.calibration is not None:
        from ..store import open_store

        with open_store(opts.calibration) as cal:
            check_calibration_store(store, cal, opts.members is not None or opts.consensus is not None)
            if opts.score == "aps" and not cal.layout.has_full_rows:
                raise ValueError(f"--method conformal --score aps needs full rows; --calibration {cal.location} is "
                                 f"compact: use --score hps")
            for t in _prefixes(opts, store.n):
                if t > cal.n:
                    raise ValueError(f"--n-use {t} exceeds the n = {cal.n} of --calibration {cal.location}")
            check_labels(cal)


def _settings(opts):
    """(miscoverage levels, epsilons, variants), each m > 2 alpha; ValueError naming the option (each option alone
    was validated with ``CertifyOptions``, entries_conformal)."""
    low = [m for m in opts.miscoverage if not m > 2 * opts.alpha]
    if low:
        raise ValueError(f"--miscoverage {low[0]:g} must exceed 2 alpha = {2 * opts.alpha:g} (the two bounds of each "
                         f"set fail with probability alpha each, paid out of the miscoverage)")
    if not opts.robust:
        raise ValueError("--robust: give rscp+, cas or both")
    return list(opts.miscoverage), list(opts.epsilon), list(opts.robust)


def claim(opts) -> str:
    """The coverage claim of a table, in words (the sidecar's ``confidence_statement``)."""
    ms = ", ".join(f"{1 - m:g}" for m in opts.miscoverage)
    from .prefixes import prefix_list

    prefixes = ", n_use" if prefix_list(opts) is not None else ""
    return (f"coverage: for each (miscoverage m, epsilon{prefixes}) setting separately, the set computed at any "
            f"input within L2 distance epsilon of a test input contains its label with probability >= 1 - m "
            f"(= {ms}) over the calibration draw, the noise and the test draw (marginal, not per input, and not "
            f"simultaneous over settings; alpha = {opts.alpha:g} is the failure probability of each of the two "
            f"bounds, paid out of m)")


def confidence(opts):
    """The coverage claim: level 1 - max(m) (the weakest listed), and the statement (validates the options first)."""
    ms, _, _ = _settings(opts)
    return 1 - max(ms), claim(opts)



# ------------------------------------------------------------------------- statistics
def statistics(block, opts, role: str) -> dict:
    """Per input of the block, per listed prefix N: what the sets need (module docstring), from rows n0..n0+N.

    ``mean``, ``var`` (B, L, m): every class's score, test side (upper
    values on a compact store), with ``rows_bounded`` (B, L) there;
    ``cal_mean`` (B, L) and, for ``cas``, ``cal_cas`` (B, L, E): the label's
    calibration scores (lower values on a compact store). The test side is
    computed for STORE's inputs, the calibration side for the reference
    store's and, with a split, for STORE's too.
    """
    from . import conformal as C

    plist = _prefixes(opts, block.n_use)
    B, m, n0, L = len(block), block.m, block.n0, len(plist)
    label = np.asarray(block.label, np.int64)
    bad = np.flatnonzero((label < 0) | (label >= m))
    if len(bad):
        raise ValueError(f"--method conformal: input {int(block.idx[bad[0]])} has label {int(label[bad[0]])}, not a "
                         f"class in 0..{m - 1}")
    compact = block.rows is None
    u = C.aps_u(opts.aps_seed, block.idx) if opts.score == "aps" else None
    out = {}
    if role == "store":
        mean, var = np.empty((B, L, m)), np.empty((B, L, m))
        bounded = np.zeros((B, L), np.int64)
        for li, N in enumerate(plist):
            if compact:
                from .compact_bounds import soft_stats_spec

                s = soft_stats_spec(block.compact["topk_p"], block.compact["topk_c"], m, n0, n0 + N, walk=False)
                mean[:, li], var[:, li] = s.mean_upper, np.nan_to_num(s.var_upper, nan=0.0)
                bounded[:, li] = s.bounded[np.arange(B), label]
            else:
                mean[:, li], var[:, li] = C.score_mean_var(block.rows, n0, n0 + N, opts.score, u)
        out.update(mean=mean, var=var)
        if compact:
            out["rows_bounded"] = bounded
    if role == "reference" or opts.calibration is None:
        top = max(plist)
        if compact:
            from .compact_bounds import measure_lower_values

            z, _ = measure_lower_values(block.compact["topk_p"], block.compact["topk_c"], label, "score", n0, n0 + top)
        else:
            z = C.label_scores(block.rows, label, n0, n0 + top, opts.score, u)
        out["cal_mean"] = np.stack([z[:, :N].mean(axis=1) for N in plist], axis=1)
        if "cas" in opts.robust:
            shift = np.asarray(opts.epsilon, np.float64) / block.sigma
            out["cal_cas"] = np.array([[C.cas_lower(z[b, :N], shift, opts.alpha) for N in plist] for b in range(B)],
                                      np.float64).reshape(B, L, len(shift))
    return out


# --------------------------------------------------------------------------- the sets
def finalize(stats: dict, ref, opts, info: dict):
    """The table: one row per (test input, n_use, miscoverage, epsilon, robust), and the sidecar entry.

    Calibration inputs: the reference store's (``ref``) or the split of
    STORE's; tau per setting from their scores, then each test input's set.
    """
    import pandas as pd

    from . import conformal as C
    from .prefixes import prefix_list

    ms, epss, variants = _settings(opts)
    plist = _prefixes(opts, info["n"])
    alpha, sigma = opts.alpha, info["sigma"]
    if ref is None:
        cal_pos, test_pos = C.split(stats["idx"], opts.calibration_split, opts.split_seed)
        cal = {k: stats[k][cal_pos] for k in ("cal_mean", "cal_cas") if k in stats}
    else:
        cal, test_pos = ref, np.arange(len(stats["idx"]))
    n_cal, T = len(cal["cal_mean"]), len(test_pos)
    settings, masks = [], []  # per setting: (prefix position, n_use, m, epsilon, variant, tau), its (T, m) sets
    for li, N in enumerate(plist):
        U = C.upper_mean(stats["mean"][test_pos, li], stats["var"][test_pos, li], N, alpha, opts.mean_bound)
        for m in ms:
            for ei, eps in enumerate(epss):
                for v in variants:
                    E = cal["cal_mean"][:, li] if v == "rscp+" else cal["cal_cas"][:, li, ei]
                    tau = C.calibration_threshold(E, m, alpha)
                    settings.append((li, N, m, eps, v, tau))
                    masks.append(C.in_set(U, tau, v, eps, sigma, N, alpha))
    mask = np.concatenate(masks)
    size = mask.sum(axis=1)
    labels = np.tile(stats["label"][test_pos], len(settings))

    def each(j, dtype):  # setting field j, once per test input
        return np.repeat(np.array([s[j] for s in settings], dtype=dtype), T)

    df = pd.DataFrame({"_pos": np.tile(test_pos, len(settings)), "n_use": each(1, np.int64),
                       "miscoverage": each(2, np.float64), "epsilon": each(3, np.float64), "robust": each(4, str),
                       "predict": np.where(size == 1, mask.argmax(axis=1), -1).astype(np.int64),
                       "radius": each(3, np.float64), "correct": mask[np.arange(len(labels)), labels].astype(np.int64),
                       "set": C.set_strings(mask), "set_size": size.astype(np.int64), "tau": each(5, np.float64),
                       "n_cal": np.full(len(labels), n_cal, np.int64)})
    if "rows_bounded" in stats:
        df["rows_bounded"] = np.concatenate([stats["rows_bounded"][test_pos, st[0]] for st in settings])
    taus = [{"n_use": N, "miscoverage": m, "epsilon": eps, "robust": v, "tau": tau} for _, N, m, eps, v, tau in settings]
    if prefix_list(opts) is None:
        df = df.drop(columns=["n_use"])
    if len(variants) == 1:  # the variant is a setting column only when several are listed (the sidecar names it)
        df = df.drop(columns=["robust"])
    split = ({"kind": "calibration-split", "fraction": opts.calibration_split, "split_seed": opts.split_seed}
             if ref is None else {"kind": "calibration store (see 'calibration')"})
    split.update(n_cal=int(n_cal), n_test=int(T))
    meta = {"conformal": {"claim": claim(opts), "split": split, "score": opts.score, "robust": variants,
                          "mean_bound": opts.mean_bound, "alpha_per_bound": alpha, "prefixes": plist, "tau": taus}}
    if opts.score == "aps":
        meta["conformal"]["aps_seed"] = opts.aps_seed
    return df, meta


