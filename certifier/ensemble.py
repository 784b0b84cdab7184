"""Ensembles of stored members, K-consensus and member ordering (docs/methods.md section 6).

A store may hold, per noisy copy, every member's log-softmax output (float32).
The ensemble's output is the average of the member logits (Eq. 2 of Horváth et al. 2022, ensembles);
log-softmax differs from the logits by a per-member constant, so

    softmax(mean_l logprob_l) == softmax(mean_l logit_l)

and its hard label is the argmax of the *summed* member log-probabilities
(ties towards the lowest index). Every certificate then treats the ensemble
row as one row; members are chosen before any row is seen (``--members``,
or ``--order-from`` a separate validation store), so the guarantees of the
method certified are unchanged.

K-consensus (Horváth et al. 2022, ensembles, section 4): members are queried in order; a row's
ensemble uses only the first K members when their hard labels agree (the
ensemble of those K), else all k selected members. KCR is the share of rows
decided by K members, and the evaluation cost is the share of member
evaluations used, ``sum(members evaluated) / (k * rows)``. The rows counted are
the rows a certificate can use: the first ``n0_use`` rows of S0 and the
``n_i`` rows of S.
"""
from __future__ import annotations

import os

import numba as nb
import numpy as np

_JIT = dict(nogil=True, cache=True)
NO_LABEL = np.iinfo(np.uint16).max  # hard label of a row no certificate may use (as the store's fill value)


# --------------------------------------------------------------------- kernel
@nb.njit(parallel=True, **_JIT)
def _ensemble_kernel(lp, sel, K, starts, stops, want_rows, out_arg, out_rows, decided, evals):
    B = lp.shape[0]
    m = lp.shape[3]
    kk = sel.shape[0]
    for b in nb.prange(B):
        acc = np.empty(m, np.float64)
        for part in range(starts.shape[1]):
            for r in range(starts[b, part], stops[b, part]):
                # hard labels of the first K members; agreement decides how many are used
                used = kk
                if K < kk:
                    agree = True
                    first = -1
                    for j in range(K):
                        mi = sel[j]
                        best = 0
                        bv = lp[b, r, mi, 0]
                        for c in range(1, m):
                            v = lp[b, r, mi, c]
                            if v > bv:
                                bv = v
                                best = c
                        if j == 0:
                            first = best
                        elif best != first:
                            agree = False
                            break
                    if agree:
                        used = K
                        decided[b] += 1
                else:
                    decided[b] += 1  # K == k: the first K members are all members
                evals[b] += used
                for c in range(m):
                    acc[c] = 0.0
                for j in range(used):
                    mi = sel[j]
                    for c in range(m):
                        acc[c] += lp[b, r, mi, c]
                best = 0
                bv = acc[0]
                for c in range(1, m):
                    if acc[c] > bv:
                        bv = acc[c]
                        best = c
                out_arg[b, r] = best
                if want_rows:
                    mx = bv / used
                    tot = 0.0
                    for c in range(m):
                        e = np.exp(acc[c] / used - mx)
                        acc[c] = e
                        tot += e
                    for c in range(m):
                        out_rows[b, r, c] = acc[c] / tot


def ensemble_rows(member_logprobs: np.ndarray, members, consensus: int | None = None, ranges=None,
                  want_rows: bool = True):
    """Ensemble hard labels and rows of ``member_logprobs`` (B, R, k, m) over ``members`` (in query order).

    Guarantee: for every row in ``ranges`` the label is the argmax (lowest index on
    ties) of the summed log-probabilities of the members used, and the row is
    softmax of their mean; the members used are the first ``consensus`` when
    their hard labels agree, else all of ``members``. ``ranges`` is a (B, P, 2)
    array of [start, stop) row ranges per input (default: all rows). Rows
    outside the ranges get label ``NO_LABEL`` and NaN rows.
    Returns ``(argmax (B, R) int64, rows (B, R, m) float32 or None, decided (B,), evals (B,))``.
    """
    lp = np.ascontiguousarray(member_logprobs, dtype=np.float32)
    B, R, k, m = lp.shape
    sel = np.asarray(list(members), dtype=np.int64)
    kk = len(sel)
    K = kk if consensus is None else int(consensus)
    if not 1 <= K <= kk:
        raise ValueError(f"--consensus must be in 1..{kk} (the number of members used), got {consensus}")
    if ranges is None:
        ranges = np.zeros((B, 1, 2), np.int64)
        ranges[:, 0, 1] = R
    ranges = np.asarray(ranges, dtype=np.int64)
    starts = np.ascontiguousarray(np.clip(ranges[..., 0], 0, R))
    stops = np.ascontiguousarray(np.clip(ranges[..., 1], 0, R))
    out_arg = np.full((B, R), NO_LABEL, np.int64)
    out_rows = np.full((B, R, m) if want_rows else (1, 1, m), np.nan, np.float32)
    decided = np.zeros(B, np.int64)
    evals = np.zeros(B, np.int64)
    _ensemble_kernel(lp, sel, K, starts, stops, bool(want_rows), out_arg, out_rows, decided, evals)
    return out_arg, (out_rows if want_rows else None), decided, evals


# ----------------------------------------------------------------- options
def check_members(members, k: int) -> list[int]:
    """The explicit member list (default all ``k``); raises ValueError on an index out of range or a repeat."""
    if members is None:
        return list(range(k))
    members = [int(v) for v in members]
    if not members:
        raise ValueError("--members: give at least one member index")
    bad = [v for v in members if not 0 <= v < k]
    if bad:
        raise ValueError(f"--members: member {bad[0]} does not exist; the store holds members 0..{k - 1}")
    if len(set(members)) != len(members):
        raise ValueError(f"--members: member {[v for v in members if members.count(v) > 1][0]} is given twice")
    return members


def setting_values(opts) -> dict:
    """The setting columns of an ensemble run: ``members`` ('0+2+3', in query order) and ``consensus``."""
    out = {"members": "+".join(str(v) for v in opts.members)}
    if opts.consensus is not None:
        out["consensus"] = int(opts.consensus)
    return out


def member_accuracy(location, members=None, storage_options=None, block_size: int = 4, max_rows: int | None = None):
    """Per member (in ``members`` order): the share of the validation store's rows whose member label is the input's label.

    Guarantee: the value for member l is exactly (# stored rows r of complete
    inputs with argmax lp[r, l] == label) / (# those rows), over each input's
    first ``min(n_rows, max_rows)`` rows (all when ``max_rows`` is None).
    """
    from ..store import open_store
    from ..store import format as F

    st = open_store(location, storage_options=storage_options)
    try:
        if not st.members:
            raise ValueError(f"--order-from {location}: the validation store holds no per-member rows")
        members = check_members(members, st.members)
        hits = np.zeros(len(members), np.int64)
        total = 0
        complete = st.complete_mask()
        if not complete.any():
            raise ValueError(f"--order-from {location}: the validation store has no complete input")
        for s in range(0, st.n_inputs, block_size):
            d = st.read_block(s, min(s + block_size, st.n_inputs), fields=(F.MEMBERS,), verify=True, only_complete=True)
            lp = d[F.MEMBERS][:, :, members, :]
            for j in range(lp.shape[0]):
                r = int(d["n_rows"][j]) if max_rows is None else min(int(d["n_rows"][j]), int(max_rows))
                lab = np.argmax(lp[j, :r], axis=-1)  # (r, kk), ties towards the lowest index
                hits += (lab == int(d["label"][j])).sum(axis=0)
                total += r
        return members, hits / max(total, 1)
    finally:
        st.close()


def _same_location(a, b) -> bool:
    try:
        from ..store.backend import is_url

        if not is_url(str(a)) and not is_url(str(b)):
            return os.path.realpath(str(a)) == os.path.realpath(str(b))
    except Exception:
        pass
    return str(a).rstrip("/") == str(b).rstrip("/")


def resolve(opts, store, storage_options=None):
    """The options with an explicit, validated member order, computed ONCE before any certified row is read.

    With ``--order-from`` the members are sorted by accuracy under noise on
    that validation store (descending, ties keep the given order); refuses
    the certified store itself (same location or same fingerprint) and a
    validation store whose members or classes differ. Returns
    ``(opts, info)``, ``info`` for the meta sidecar.
    """
    from ..store import open_store

    if not store.members:
        raise ValueError(f"--members/--consensus need per-member rows, which store {store.location} does not hold")
    members = check_members(opts.members, store.members)
    if opts.consensus is not None and not 1 <= opts.consensus <= len(members):
        raise ValueError(f"--consensus must be in 1..{len(members)} (the number of members used), got {opts.consensus}")
    info = {"members_given": None if opts.members is None else list(opts.members)}
    if opts.order_from:
        if _same_location(opts.order_from, store.location):
            raise ValueError(f"--order-from {opts.order_from} is the store being certified; order members on a "
                             "separate validation store (its rows would otherwise choose the classifier they test)")
        with open_store(opts.order_from, storage_options=storage_options) as val:
            if val.fingerprint() == store.fingerprint():
                raise ValueError(f"--order-from {opts.order_from} holds the same samples as the store being certified "
                                 "(equal fingerprints); order members on a separate validation store")
            if val.members != store.members or val.num_classes != store.num_classes:
                raise ValueError(f"--order-from {opts.order_from}: {val.members} members x {val.num_classes} classes, "
                                 f"but the certified store has {store.members} x {store.num_classes}")
            val_fp = val.fingerprint()
        _, acc = member_accuracy(opts.order_from, members, storage_options=storage_options)
        order = sorted(range(len(members)), key=lambda i: (-acc[i], i))
        info.update(order_from=str(opts.order_from), order_from_fingerprint=val_fp,
                    member_accuracy={str(members[i]): float(acc[i]) for i in range(len(members))})
        members = [members[i] for i in order]
    info["members"] = members
    return opts.replace(members=members), info


# ------------------------------------------------------------ engine hooks
def apply_ensemble(block, opts) -> dict:
    """Replace ``block.argmax`` (and ``block.rows`` when the method reads rows) by the ensemble's.

    Guarantee: afterwards every usable row of the block (S0's first n0_use
    rows, S's n_i rows) is the (K-consensus) ensemble row of ``opts.members``
    in that order; other rows carry no label. Returns the block's stats for
    ``merge_stats``.
    """
    lp = block.member_logprobs
    if lp is None:
        raise ValueError("--members/--consensus need per-member rows, which this store does not hold")
    k = lp.shape[2]
    members = check_members(opts.members, k)
    B = len(block)
    ranges = np.zeros((B, 2, 2), np.int64)
    ranges[:, 0, 1] = min(block.n0_use, block.n0)
    ranges[:, 1, 0] = block.n0
    ranges[:, 1, 1] = block.n0 + block.n_i
    arg, rows, decided, evals = ensemble_rows(lp, members, opts.consensus, ranges, want_rows=block.rows is not None)
    block.argmax = arg
    if rows is not None:
        block.rows = rows
    n_rows_used = int((ranges[:, :, 1] - ranges[:, :, 0]).sum())
    return {"members": [int(v) for v in members], "consensus": opts.consensus, "k": len(members),
            "rows": n_rows_used, "decided_by_K": int(decided.sum()), "member_evals": int(evals.sum())}


def merge_stats(stats: list) -> dict:
    """Run-level summary of the blocks' stats: KCR and the share of member evaluations used.

    KCR = rows decided by the first K members / rows; cost = member
    evaluations / (k * rows); both over every usable row of every input.
    """
    stats = [s for s in stats if s]
    if not stats:
        return {}
    rows = sum(s["rows"] for s in stats)
    k = stats[0]["k"]
    dec = sum(s["decided_by_K"] for s in stats)
    ev = sum(s["member_evals"] for s in stats)
    out = {"members": stats[0]["members"], "consensus": stats[0]["consensus"], "k": k, "rows": rows,
           "KCR": dec / rows if rows else float("nan"),
           "evaluation_cost": ev / (k * rows) if rows else float("nan")}
    if stats[0]["consensus"] is None:
        out["KCR"] = None  # no consensus: every row uses all k members
    return out
