"""Run a certificate method over a whole store, block by block, and hand the blocks' tables on in order.

The engine is the certifier's only I/O: it opens the store, checks that
every input it will use is complete and matches its checksum, cuts the
inputs into blocks (memory stays bounded by the block size, not the store),
runs the method on each block in parallel (a pool of threads by default; a
``dask.distributed`` scheduler or a LocalCluster of processes on request)
and hands each block's table, in the documented column order
(docs/methods.md, the certificate table), on in input order: ``certify``
concatenates them, ``certify_to`` writes them to a file as they come.
"""
from __future__ import annotations

import datetime as _dt

import numpy as np
import pandas as pd

from ..store import format as F
from ..store import open_store
from ..store.errors import StoreError
from ..store.locations import redact

from . import prefixes
from .block import Block
from .cluster import Connection
from .options import CertifyOptions
from .registry import EXTRA_COLUMNS, get_method, setting_columns
from .table import TableWriter

DEFAULT_BLOCK_BYTES = 64 * 2**20


def _block_size(store, fields, check=()) -> int:
    """Inputs per task so that one task holds about DEFAULT_BLOCK_BYTES of decoded arrays."""
    R, m, k = store.shape.total_rows, store.num_classes, store.members
    stored = np.dtype(store.dtype).itemsize
    per_input = R * 10  # argmax (uint16) and its int64 copy
    if "rows" in fields:
        per_input += R * m * (stored + 4)  # stored dtype, then the float32 copy
    elif "rows" in check:
        per_input += R * m * stored
    if "member_logprobs" in fields or "member_logprobs" in check:
        per_input += R * k * m * 4 * (2 if "member_logprobs" in fields else 1)
    if "compact" in fields or "compact" in check:  # topk_p (stored, then float32), topk_c, entropy
        per_input += R * (int(store.attrs.get("topk", 2)) * (stored + 4 + 2) + 8)
    if "rows0" in fields or "rows0" in check:  # whole selection rows of a compact store (stored, then float32)
        per_input += store.n0 * m * (stored + (4 if "rows0" in fields else 0))
    return int(max(1, min(256, DEFAULT_BLOCK_BYTES // max(per_input, 1))))


def _uses_ensemble(opts: CertifyOptions) -> bool:
    return opts.members is not None or opts.consensus is not None


def certify_block(location, storage_options, start, stop, method_name, opts, fields, check, n0_use, n_use,
                  role="store"):
    """Certify input slots start:stop of a store: the unit of work of one Dask task.

    Returns ``(table, records)``: the block's certificates and its input
    records (for the store fingerprint and the check of unique dataset
    indices, which need every block). Each task reads its own records, so
    that no serial pass over the whole store precedes the parallel work.
    For a method with ``statistics`` (a step across inputs) the first part
    is instead the block's statistics, ``{name: array}`` with ``_slot``,
    ``idx`` and ``label`` added (``role``: "store" or "reference").
    """
    # In a worker process, unpickling this function imported smoothcert.certifier (the package) first, which
    # registered every method.
    method = get_method(method_name)
    st = open_store(location, storage_options=storage_options)
    try:
        records = st.read_records(start, stop, strict=True)
        check_rows(st, method, records, n_use)
        data = st.read_block(start, stop, fields=tuple(fields), verify=True, check=tuple(check), records=records)
    finally:
        st.close()
    block = Block(idx=data["idx"], label=data["label"], n_rows=data["n_rows"], core_predict=data["core_predict"],
                  n0=st.n0, n0_use=n0_use, n_use=n_use, sigma=st.sigma, m=st.num_classes,
                  argmax=data.get("argmax"), rows=data.get("rows"), member_logprobs=data.get("member_logprobs"),
                  compact={k: data[k] for k in ("topk_p", "topk_c", "entropy", "rows0") if k in data}
                  if "topk_p" in data else None)
    read_extra = method.read_extra  # incremental: the base store's rows of these inputs
    if read_extra is not None:
        block.extra = read_extra(block, opts, storage_options, start, stop, verify_all=bool(check))
    ens_stats = None
    if _uses_ensemble(opts):
        from .ensemble import apply_ensemble

        ens_stats = apply_ensemble(block, opts)
    if method.statistics is not None:  # a step across inputs: the table is made once every block is in
        stats = dict(method.statistics(block, opts, role))
        stats.update(_slot=data["slot"], idx=block.idx, label=block.label)
        if ens_stats is not None:
            stats["_ensemble"] = ens_stats
        return stats, records
    df = prefixes.compute(method, block, opts)  # method.compute, once per listed --n-use prefix
    if ens_stats is not None:
        from .ensemble import setting_values

        for col, val in setting_values(opts).items():
            df[col] = val
    pos = df.pop("_pos").to_numpy()
    df.insert(0, "_slot", data["slot"][pos])
    df.insert(1, "idx", block.idx[pos])
    df.insert(2, "label", block.label[pos])
    # input-major, settings in the method's order within an input, columns in their final order: blocks
    # are disjoint, increasing slot ranges, so the engine only concatenates (no whole-table sort or copy)
    df = _order_columns(df.sort_values("_slot", kind="mergesort", ignore_index=True), method.name)
    if ens_stats is not None:
        df.attrs["ensemble"] = ens_stats
    return df, records


def _order_columns(df: pd.DataFrame, method_name: str) -> pd.DataFrame:
    """A block's table with ``method`` and ``correct`` added, in the documented column order (docs/methods.md, the certificate table) (``df`` is reused)."""
    df["method"] = method_name
    if "correct" not in df.columns:  # a set-valued method writes its own (the label is in the set)
        df["correct"] = (df["predict"].to_numpy() == df["label"].to_numpy()).astype(np.int64)
    head = ["idx", "label", "method"] + [c for c in setting_columns() if c in df.columns]
    mid = ["predict", "radius", "correct"] + [c for c in EXTRA_COLUMNS if c in df.columns]
    rest = [c for c in df.columns if c not in head + mid and not c.startswith("_")]
    out = df[head + mid + rest].reset_index(drop=True)
    out["radius"] = out["radius"].astype(np.float64)
    return out


def balanced_blocks(n_inputs: int, max_block: int, slots: int) -> list[tuple[int, int]]:
    """(start, stop) of each task's inputs: at most ``max_block`` inputs each, in whole rounds of ``slots``.

    ``slots`` is how many tasks run at once. With 23 equal tasks on 2 workers
    one worker runs 12 and the other idles during the last one (4 % of the
    run); 24 tasks whose sizes differ by at most one input finish together.
    At least two rounds when there are enough inputs, so that an uneven
    task can be made up for; fewer tasks than slots only with fewer inputs.
    """
    n_inputs, max_block, slots = int(n_inputs), max(1, int(max_block)), max(1, int(slots))
    if n_inputs <= 0:
        return []
    tasks = -(-n_inputs // max_block)
    if slots > 1:
        tasks = max(tasks, 2 * slots)
        tasks = min(-(-tasks // slots) * slots, n_inputs)
    cuts = [n_inputs * t // tasks for t in range(tasks + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _in_order(n: int, submit, window: int, on_result, bar) -> None:
    """Run blocks 0..n-1 (``submit(i)``: a future of block i's result), at most ``window`` of them beyond the next
    block to hand on, and hand each result to ``on_result`` in block order as soon as it is there.

    The window keeps the blocks computed ahead of a slow consumer (a table
    being written) from piling up in memory.
    """
    futures, submitted = {}, 0
    try:
        for i in range(n):
            while submitted < min(n, i + window):
                futures[submitted] = submit(submitted)
                submitted += 1
            f = futures.pop(i)
            value = f.result()
            if hasattr(f, "release"):  # a dask future: the worker may forget the block now
                f.release()
            del f
            bar.update(1)
            on_result(value)
            del value
    except BaseException:
        for f in futures.values():
            f.cancel()
        raise


def _run_tasks(task_args, connection, progress, desc, on_result) -> None:
    """Run ``certify_block(*args)`` for every ``args`` of ``task_args(slots)`` (``slots``: how many run at once) on
    threads of this process (``connection`` None) or on the cluster of ``connection`` (a ``cluster.Connection``,
    closed at the end); each result goes to ``on_result`` in block order as soon as it and every earlier one are
    done, while at most 2 x slots blocks are computed or held ahead of it."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    bar = None   # made once the number of blocks is known (a bar without a total prints "0block" first)
    try:
        if connection is None:
            import dask

            slots = dask.config.get("num_workers", None) or os.cpu_count() or 1
            args = task_args(slots)
            bar = tqdm(total=len(args), desc=desc, unit="block", disable=not progress, leave=False)
            with ThreadPoolExecutor(slots, thread_name_prefix="certify") as pool:
                _in_order(len(args), lambda i: pool.submit(certify_block, *args[i]), 2 * slots, on_result, bar)
            return
        client = connection.client()
        slots = sum(client.nthreads().values())
        args = task_args(slots)
        bar = tqdm(total=len(args), desc=desc, unit="block", disable=not progress, leave=False)
        _in_order(len(args), lambda i: client.submit(certify_block, *args[i], pure=False), 2 * slots, on_result,
                  bar)
    finally:
        if bar is not None:
            bar.close()
        if connection is not None:
            connection.close()


def check_rows(store, method, records, n_use: int) -> None:
    """Refuse a block with an input of fewer than n0 + n_use stored rows unless ``method`` takes variable rows.

    (An incomplete input is refused by ``read_block``, naming it.)
    """
    if not method.variable_rows:
        idx, n_rows = records["idx"], records["n_rows"]
        short = (n_rows < store.n0 + n_use) & (records["complete"] == 1)
        if short.any():
            s = int(np.flatnonzero(short)[0])
            raise ValueError(f"input {int(idx[s])} has only {int(n_rows[s])} rows stored (adaptive sampling?); --method "
                             f"{method.name} needs n0 + n = {store.n0 + n_use}: use --n-use {int(n_rows[s]) - store.n0} or --method adaptive")


def check_unique(store, idx) -> None:
    """Refuse a store in which a dataset index appears twice (StoreError naming it)."""
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise StoreError(f"store {store.location}: dataset index {int(uniq[counts > 1][0])} appears more than once")


def prepare(store, method, opts: CertifyOptions):
    """Check the store's metadata against the method and options before any work; returns (n0_use, n_use, fields).

    The per-input records are checked by each task (complete, ``check_rows``)
    and for unique dataset indices once all are read (``check_unique``).
    """
    n0_use = store.n0 if opts.n0_use is None else int(opts.n0_use)
    if n0_use > store.n0:
        raise ValueError(f"--n0-use {n0_use} exceeds the store's n0 = {store.n0}")
    n_use = prefixes.check(method, opts, store.n)  # the largest listed prefix; --interval/--n-use refusals
    if method.needs_core_predict and not store.has_core_predict:
        raise ValueError(f"--method {method.name} needs core_predict (the core model's clean prediction), which store {store.location} does not hold; sample with --core-model")
    fields = list(method.fields)
    if not store.layout.has_full_rows:
        from .compact import compact_fields

        fields = compact_fields(method, store, fields, opts)
    if _uses_ensemble(opts):
        if not store.members:
            raise ValueError(f"--members/--consensus need per-member rows, which store {store.location} does not hold")
        if "member_logprobs" not in fields:
            fields.append("member_logprobs")
    return n0_use, n_use, fields


def _reference_location(method, opts):
    """The second store whose inputs go through ``method.statistics`` too (its option ``reference``), or None."""
    return getattr(opts, method.reference) if method.reference is not None else None


def _source(role, store, location, storage_options, method, opts, verify):
    """What the tasks over one store need: (role, location, storage options, inputs, fields, parts only checked,
    inputs per task, n0_use, n_use)."""
    n0_use, n_use, fields = prepare(store, method, opts)
    check = [p for p in store.layout.stored_fields(store.shape) if p not in fields] if verify == "full" else []
    return (role, location, storage_options, store.n_inputs, fields, check, _block_size(store, fields, check),
            n0_use, n_use)


def _gather(parts: list) -> dict:
    """Every block's statistics concatenated along the inputs (slot order); ``_ensemble`` entries left out."""
    keys = [k for k in parts[0] if k != "_ensemble"] if parts else []
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _prepare_run(location, method, opts: CertifyOptions, storage_options, verify: str):
    """Open the store (and a method's reference store) and check them and the options against the method before
    any work.

    Returns (meta, st, sources, opts, info, ref): the sidecar so far, the (closed) store, what the tasks over each
    store need (``_source``: STORE first, then the reference store), ``opts`` with an ensemble's member order
    resolved, the store's settings a ``finalize`` reads, and the (closed) reference store or None.
    """
    st = open_store(location, storage_options=storage_options)
    try:
        sources = [_source("store", st, location, storage_options, method, opts, verify)]
        n0_use, n_use = sources[0][-2:]
        if method.check is not None:  # method-specific option checks, before any work
            method.check(opts, st)
        ens_info = None
        if _uses_ensemble(opts):  # the member order is fixed once, before any certified row is read
            from .ensemble import resolve

            opts, ens_info = resolve(opts, st, storage_options)
        compact = not st.layout.has_full_rows
        meta = {
            "method": method.name,
            "store": redact(location),
            "store_fingerprint": None,  # from every block's records, below
            "store_format_version": st.attrs.get("format_version"),
            "sigma": st.sigma, "n0": st.n0, "n": st.n, "n0_use": n0_use,
            "n_use": n_use if prefixes.prefix_list(opts) is None else prefixes.prefix_list(opts),
            "num_classes": st.num_classes, "n_inputs": st.n_inputs,
            "options": opts.to_dict(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if ens_info is not None:
            meta["ensemble_members"] = ens_info
        if compact:
            from .compact import statement

            meta["compact"] = statement(method, st, opts)
        level, text = method.confidence(opts)
        if method.finalize is None:
            extra, text = prefixes.meta(opts, level, text)  # interval, prefixes, "for every prefix simultaneously"
            meta.update(extra)
        meta["confidence"] = level
        meta["confidence_statement"] = text
        info = {"sigma": st.sigma, "n0": st.n0, "n": st.n, "num_classes": st.num_classes, "compact": compact}
    finally:
        st.close()
    ref_location = _reference_location(method, opts)
    ref = None
    if ref_location is not None:  # its options were checked against STORE by method.check
        ref = open_store(ref_location)
        try:
            sources.append(_source("reference", ref, ref_location, None, method, opts, verify))
        finally:
            ref.close()
        meta["options"][method.reference] = redact(ref_location)
        meta[method.reference] = {"store": redact(ref_location)}  # its fingerprint once every block is read
    return meta, st, sources, opts, info, ref


def run(location, method_name: str, opts: CertifyOptions | None = None, *, on_part, scheduler=None, workers=None,
        block_size: int | None = None, progress: bool = True, storage_options=None, verify: str = "full",
        connection: Connection | None = None) -> dict:
    """Certify every input of the store at ``location`` with ``method_name``, block by block; returns the sidecar dict.

    Each block's certificates (a DataFrame: one row per input and setting,
    columns as docs/methods.md documents) go to ``on_part`` in input order as
    soon as that block and every earlier one are done, so the whole table
    need never be in memory at once. The returned dict is for the sidecar
    (overall confidence, options, store fingerprint, the method's summary);
    it is complete only once every block passed its checks (a store whose
    dataset index appears twice raises StoreError after the last block).
    ``verify='full'`` checks every stored part of each input against its
    checksum, ``'used'`` only the parts the method reads. Results do not
    depend on the scheduler or block size. With ``workers`` the LocalCluster
    starts while the store is opened and checked; ``connection`` (a
    ``cluster.Connection`` the caller started earlier, e.g. before its own
    imports) is used instead and closed at the end. A method with
    ``finalize`` (a step across inputs) gets every block's statistics, and
    those of its reference store, before any row of its table is made: its
    table goes to ``on_part`` as one part.
    """
    if connection is None and (scheduler is not None or workers):
        connection = Connection(scheduler, workers)  # starts now, while the store is opened and checked
    try:
        opts = (opts or CertifyOptions()).validate()
        method = get_method(method_name)
        meta, st, sources, task_opts, info, ref = _prepare_run(location, method, opts, storage_options, verify)
    except BaseException:
        if connection is not None:
            connection.close()
        raise
    n_store_tasks = [0]

    def task_args(slots):
        args = []
        for role, loc, so, N, flds, chk, max_block, n0u, nu in sources:
            blocks = [(s, min(s + int(block_size), N)) for s in range(0, N, int(block_size))] if block_size \
                else balanced_blocks(N, max_block, slots)
            args += [(loc, so, a, b, method.name, task_opts, flds, chk, n0u, nu, role) for a, b in blocks]
            if role == "store":
                n_store_tasks[0] = len(args)
        return args

    records, ref_records, ensemble, kept, stats, ref_stats = [], [], [], [], [], []
    reads = method.summary_reads

    def take(result):
        part, rec = result
        if method.finalize is not None:  # statistics: STORE's blocks first, then the reference store's
            if len(records) < n_store_tasks[0]:
                records.append(rec)
                stats.append(part)
                if part.get("_ensemble"):
                    ensemble.append(part["_ensemble"])
            else:
                ref_records.append(rec)
                ref_stats.append(part)
            return
        records.append(rec)
        if part.attrs.get("ensemble"):
            ensemble.append(part.attrs["ensemble"])
        if method.extra_summary is not None:
            kept.append(part if reads is None else part[list(reads)])
        on_part(part)

    _run_tasks(task_args, connection, progress, f"certify {method.name}", take)
    recs = {k: np.concatenate([rec[k] for rec in records]) for k in F.INPUT_FIELDS}
    check_unique(st, recs["idx"])
    meta["store_fingerprint"] = st.fingerprint(recs)
    if method.finalize is not None:
        gathered_ref = None
        if ref is not None:
            rrecs = {k: np.concatenate([rec[k] for rec in ref_records]) for k in F.INPUT_FIELDS}
            check_unique(ref, rrecs["idx"])
            meta[method.reference].update(store_fingerprint=ref.fingerprint(rrecs), n_inputs=int(len(rrecs["idx"])))
            gathered_ref = _gather(ref_stats)
        table = _finalize(method, _gather(stats), gathered_ref, task_opts, info, meta)
        del stats, ref_stats
        if method.extra_summary is not None:
            kept.append(table if reads is None else table[list(reads)])
        on_part(table)
        del table
    if ensemble:
        from .ensemble import merge_stats

        meta["ensemble"] = merge_stats(ensemble)
    if method.extra_summary is not None:
        table = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
        del kept
        meta.update(method.extra_summary(table, task_opts))
    return meta


def certify(location, method_name: str, opts: CertifyOptions | None = None, **kw):
    """Certify every input of the store at ``location`` with ``method_name``; ``run``'s keywords.

    Returns ``(table, meta)``: the certificate table (one row per input and
    setting, columns as docs/methods.md documents) and a dict for the sidecar
    (overall confidence, options, store fingerprint).
    """
    parts = []
    meta = run(location, method_name, opts, on_part=parts.append, **kw)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return table, meta


def _finalize(method, stats: dict, ref_stats, opts, info: dict, meta: dict) -> pd.DataFrame:
    """The table of a method with a step across inputs: ``method.finalize`` on every block's statistics, then the
    engine's columns (``idx``, ``label``, ``method``) in the documented order; its sidecar entries go into ``meta``."""
    df, extra = method.finalize(stats, ref_stats, opts, info)
    meta.update(extra)
    if _uses_ensemble(opts):  # the ensemble's setting columns, as certify_block adds them
        from .ensemble import setting_values

        for col, val in setting_values(opts).items():
            df[col] = val
    pos = df.pop("_pos").to_numpy()
    df.insert(0, "_slot", stats["_slot"][pos])
    df.insert(1, "idx", stats["idx"][pos])
    df.insert(2, "label", stats["label"][pos])
    return _order_columns(df.sort_values("_slot", kind="mergesort", ignore_index=True), method.name)


def certify_to(out, location, method_name: str, opts: CertifyOptions | None = None, *, extra_meta=None,
               on_part=None, **kw) -> dict:
    """Certify into the table file ``out`` (.csv, .jsonl, .parquet by suffix) and its sidecar; ``run``'s keywords.

    Blocks are written as they are done (``table.TableWriter``: the table is
    never whole in memory, and writing overlaps computing); the file appears
    only once every block is written and checked, with the bytes
    ``table.write_table`` writes for the whole table. ``extra_meta`` is
    added to the sidecar (e.g. the command line); ``on_part`` also gets each
    block's table (e.g. a ``report.ConsoleSummary``). Returns the sidecar dict.
    """
    with TableWriter(out) as writer:
        def take(df):
            writer.write(df)
            if on_part is not None:
                on_part(df)

        meta = run(location, method_name, opts, on_part=take, **kw)
        meta.update(extra_meta or {})
        writer.commit(meta)
    return meta
