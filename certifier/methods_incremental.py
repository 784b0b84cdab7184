"""The computation of ``--method incremental --base BASE``: a changed model from its base store's samples (section 10).

The store being certified (OUT) is a *replay store*: the changed model f'
evaluated on BASE's own noisy copies (BASE's n0 selection rows and its first
P estimation rows, P = OUT's n, or ``--n-use``). OUT records which store it
replays in its ``replay_of`` attribute, ``{"location": ..., "fingerprint":
...}`` (store/FORMAT.md, "Replay stores"). Before any work this module
refuses, each in one line: a missing ``--base`` or ``replay_of``; a BASE
whose sigma, n0, seed, noise scheme, indices, data fingerprint, number of
inputs or of classes differ from OUT's; a BASE that does not hold P
estimation rows; a BASE whose dataset index of some slot differs from OUT's;
a BASE with an incomplete or adaptively sampled input; and a BASE whose
fingerprint differs from the one OUT recorded.

Every block of OUT is paired with the same slots of BASE by the engine's
``read_extra`` hook (this module's ``read_base``), which reduces BASE's rows
to what the certificate needs (selection counts, estimation counts, the
first P estimation labels) a bounded number of inputs at a time; the
certificate itself is the pure ``certifier.incremental.certify``. The
registry entry is in ``entries_incremental``.
"""
from __future__ import annotations

import numpy as np

from ..store import open_store
from . import incremental
from .kernels import class_counts
from .prefixes import prefix_list
from .registry import frame, level

REPLAY_ATTR = "replay_of"  # in OUT's group attributes: {"location": str, "fingerprint": str} of its base store

# Settings a replay store shares with its base: the noisy copies are a function of (seed, noise scheme, dataset
# index, row), the certificate's radius of sigma; the rest make slot i of one the same input as slot i of the other.
MATCHED = (("sigma", "sigma"), ("n0", "n0"), ("seed", "seed"), ("noise_scheme", "noise scheme"),
           ("indices", "indices"), ("data_fingerprint", "data fingerprint"), ("n_inputs", "number of inputs"),
           ("num_classes", "number of classes"))

BASE_BLOCK_BYTES = 64 * 2**20  # decoded base arrays (hard labels, parts being verified) held at once by one task


def _short(v):
    return v[:12] + "..." if isinstance(v, str) and len(v) == 64 else v


def mismatches(out_attrs: dict, base_attrs: dict) -> list[str]:
    """The settings in which a base store's attributes differ from its replay store's, as 'name BASE vs OUT' texts."""
    diffs = []
    for key, label in MATCHED:
        b, o = base_attrs.get(key), out_attrs.get(key)
        same = float(b) == float(o) if key == "sigma" and b is not None and o is not None else b == o
        if not same:
            diffs.append(f"{label} {_short(b)} in BASE, {_short(o)} in STORE")
    return diffs


def replay_record(store) -> dict:
    """OUT's ``replay_of`` attribute, checked: ``{"location": str, "fingerprint": str}`` (ValueError otherwise)."""
    rec = store.attrs.get(REPLAY_ATTR)
    if rec is None:
        raise ValueError(f"--method incremental: store {store.location} records no '{REPLAY_ATTR}' (it is not a replay "
                         f"of a base store's noisy copies); certify it directly, e.g. --method cohen")
    if not (isinstance(rec, dict) and isinstance(rec.get("fingerprint"), str)):
        raise ValueError(f"--method incremental: store {store.location}: '{REPLAY_ATTR}' must be "
                         f"{{location, fingerprint}}, got {rec!r}")
    return rec


def check_base(out, base, P: int) -> None:
    """Refuse (ValueError, one line) a BASE that OUT is not a replay of, before any row is read.

    ``out`` and ``base`` are opened stores, ``P`` the estimation rows of OUT
    the certificate pairs with BASE's. Reads only metadata and the
    per-input records of both.
    """
    rec = replay_record(out)
    where = f"--base {base.location} does not match store {out.location}"
    diffs = mismatches(out.attrs, base.attrs)
    if diffs:
        raise ValueError(f"{where}: " + "; ".join(diffs) + " (a replay store is sampled on its base's noisy copies)")
    if P > base.n:
        raise ValueError(f"{where}: the certificate pairs P = {P} estimation rows, BASE holds only n = {base.n}")
    orec, brec = out.read_records(), base.read_records()
    bad = np.flatnonzero(brec["complete"] != 1)
    if len(bad):
        s = int(bad[0])
        raise ValueError(f"--base {base.location}: input slot {s} is incomplete; the base store must be complete")
    short = np.flatnonzero(brec["n_rows"] != base.n0 + base.n)
    if len(short):
        s = int(short[0])
        raise ValueError(f"--base {base.location}: input {int(brec['idx'][s])} has {int(brec['n_rows'][s])} rows "
                         f"(adaptive sampling?); pA needs all n0 + n = {base.n0 + base.n} rows of the base")
    differ = np.flatnonzero(orec["idx"] != brec["idx"])
    if len(differ):
        s = int(differ[0])
        raise ValueError(f"{where}: slot {s} holds dataset index {int(brec['idx'][s])} in BASE, "
                         f"{int(orec['idx'][s])} in STORE")
    fp = base.fingerprint(brec)
    if fp != rec["fingerprint"]:
        raise ValueError(f"{where}: BASE's fingerprint is {_short(fp)}, store {out.location} was replayed from "
                         f"{rec.get('location')!r} with fingerprint {_short(rec['fingerprint'])} (BASE changed "
                         f"since, or is another store)")


def check_options(opts, store=None) -> None:
    """Engine hook, before any work: --base given, no ensemble options, and BASE is the store OUT replays."""
    if opts.base is None:
        raise ValueError("--method incremental needs --base BASE (the store of the original model whose noisy "
                         "copies STORE replays)")
    if opts.members is not None or opts.consensus is not None:
        raise ValueError("--method incremental: --members/--consensus are not supported (the base's and the "
                         "replay's hard labels are compared as stored)")
    if store is None:
        return
    plist = prefix_list(opts)
    P = store.n if opts.n_use is None else (max(plist) if plist is not None else int(opts.n_use))
    with open_store(opts.base) as base:
        check_base(store, base, P)


def _base_parts(base, verify_all: bool) -> list:
    """Parts of BASE read and checked but not returned: every stored part under --verify full (as for STORE)."""
    if not verify_all:
        return []
    return [p for p in base.layout.stored_fields(base.shape) if p != "argmax"]   # argmax: read anyway


def _bytes_per_input(base, check) -> int:
    """Decoded bytes of one BASE input: its hard labels (uint16, then int64) and the parts read to be verified."""
    R, m, stored = base.n0 + base.n, base.num_classes, np.dtype(base.dtype).itemsize
    total = R * 10
    if "rows" in check:
        total += R * m * stored
    if "compact" in check:  # topk_p (stored dtype), topk_c (uint16), entropy (float64)
        total += R * (int(base.attrs.get("topk", 2)) * (stored + 2) + 8)
    if "rows0" in check:  # the whole selection rows of a compact-s0 store (stored dtype)
        total += base.n0 * m * stored
    if "member_logprobs" in check:
        total += R * base.members * m * 4
    return total


def read_base(block, opts, storage_options, start: int, stop: int, verify_all: bool = True) -> dict:
    """Engine hook: BASE's selection counts, estimation counts and first P estimation labels of slots start:stop.

    Reads BASE a bounded number of inputs at a time (about BASE_BLOCK_BYTES
    of decoded hard labels), each input verified against its checksum (every
    stored part when ``verify_all``, as ``--verify full`` does for STORE), and
    keeps only what section 10 uses: ``counts0`` (B, m) over the first
    ``n0_use`` selection rows, ``counts`` (B, m) over all n estimation rows,
    ``s_labels`` (B, P) the first P estimation labels, and ``n``.
    """
    P, m = int(block.n_use), block.m
    del storage_options  # STORE's; BASE is opened as check_options opened it, with the default options
    with open_store(opts.base) as base:
        n0, n = base.n0, base.n
        check = _base_parts(base, verify_all)
        step = max(1, BASE_BLOCK_BYTES // _bytes_per_input(base, check))
        parts = {"counts0": [], "counts": [], "s_labels": []}
        for a in range(start, stop, step):
            b = min(a + step, stop)
            data = base.read_block(a, b, fields=("argmax",), verify=True, check=tuple(check))
            if not np.array_equal(data["idx"], block.idx[a - start:b - start]):
                raise ValueError(f"--base {base.location}: slots {a}..{b - 1} hold other dataset indices than STORE's")
            lab = data["argmax"]
            parts["counts0"].append(class_counts(lab, 0, block.n0_use, m))
            parts["counts"].append(class_counts(lab, n0, n0 + n, m))
            parts["s_labels"].append(np.ascontiguousarray(lab[:, n0:n0 + P]))
            del data, lab
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["n"] = n
    return out


def certify_incremental(block, opts):
    """One row per input: the base's cA within sigma Phi^-1(pA - zeta), at the level of entries_incremental.confidence."""
    base = block.extra
    if base is None:
        raise ValueError("--method incremental: no base rows were read for this block (certify through the engine)")
    P = int(block.n_use)  # one prefix of a --n-use list at a time (certifier/prefixes.py); base rows read for the largest
    paired = base["s_labels"][:, :P], block.s_labels()[:, :P]
    d = incremental.count_disagreements(*paired)
    lost = incremental.count_lost(*paired, incremental.predicted_class(base["counts0"]))
    a = level(opts, spends_twice=True)
    pred, rad, pA, zeta = incremental.certify(base["counts0"], base["counts"], base["n"], lost, P, block.sigma, a)
    return frame(np.arange(len(block)), predict=pred, radius=rad, p_lower=pA, zeta=zeta, disagreements=d,
                 lost=lost, rows_used=P)


def summary(table, opts) -> dict:
    """Sidecar entry: the base's fingerprint (checked equal to STORE's replay_of), P, the disagreement and lost-vote rates."""
    with open_store(opts.base) as base:
        fp = base.fingerprint()
    out = {"base_fingerprint": fp,
           "bound": "P(f'(x+e) = cA) >= pA - zeta: pA from the base store, zeta bounds the rate of paired rows where "
                    "the base says cA and the changed model does not (lost)"}
    if len(table):
        P = table["rows_used"].to_numpy()
        out["rows_used"] = int(P[0])
        out["disagreement_rate_mean"] = float(np.mean(table["disagreements"].to_numpy() / P))
        out["lost_rate_mean"] = float(np.mean(table["lost"].to_numpy() / P))
        out["zeta_mean"] = float(table["zeta"].mean())
    return {"incremental": out}

