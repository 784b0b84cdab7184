"""A table's CSV lines, byte for byte those ``DataFrame.to_csv(index=False)`` writes, at a fraction of its cost.

pandas turns every cell into a Python object and hands the rows to the
``csv`` module: for a 3,000,000-row sweep that is most of a run. Here each
column becomes either integers, written digit by digit by a Numba kernel, or
indices into a small table of distinct texts, made by the very conversion
pandas applies to that column (numpy's ``astype(str)`` for floats, the
strings themselves for strings and categories; missing values as ``''``),
and the kernel copies the texts into the lines. Distinct values are few in
certificate tables (thresholds, bounds of the same counts), so each is
formatted once per table part.

Columns of other kinds (booleans, dates, objects that are not strings),
texts the ``csv`` module would quote (a comma, a quote, a line break), or
line ends other than '\\n' make ``csv_lines`` return None: the caller then
uses pandas. Pure functions of the table.
"""
from __future__ import annotations

import os

import numba as nb
import numpy as np
import pandas as pd

_MEMO_MAX = 1_000_000  # distinct float texts kept per table column (about 0.1 GB at most)
_QUOTED = (",", '"', "\r", "\n", "\x00")  # the csv module quotes a field holding one of these; NUL: never seen


def _float_texts(values: np.ndarray, memo: dict):
    """(codes, texts as a fixed-width bytes array) of a float column: numpy's text of each distinct value, '' for NaN.

    For float64 the text is Python's ``repr``, the same shortest round-trip
    digits and layout as numpy's (pandas' own conversion, checked in the
    tests), and faster; ``memo`` keeps the texts of values seen before.
    """
    bits = values.view(np.int64 if values.dtype.itemsize == 8 else np.int32)  # -0.0 and 0.0 apart, like their texts
    codes, uniq_bits = pd.factorize(bits)
    uniq_bits = np.asarray(uniq_bits, dtype=bits.dtype)
    keys = uniq_bits.tolist()
    texts = [memo.get(k) for k in keys]
    missing = [i for i, t in enumerate(texts) if t is None]
    if missing:
        new = uniq_bits[missing].view(values.dtype)
        made = map(repr, new.tolist()) if values.dtype == np.float64 else new.astype(str).tolist()
        if len(memo) > _MEMO_MAX:
            memo.clear()
        for i, x, t in zip(missing, new.tolist(), made):
            texts[i] = memo[keys[i]] = b"" if x != x else t.encode()  # NaN: na_rep ''
    return codes, np.array(texts or [b""], dtype="S32")


def _string_texts(codes, uniq):
    """(codes, texts) of strings; None when one is not a string or would be quoted."""
    uniq = list(uniq)
    if not all(isinstance(u, str) and not any(ch in u for ch in _QUOTED) for u in uniq):
        return None
    return codes, np.array([u.encode() for u in uniq] or [b""], dtype=bytes)


def _column(s: pd.Series, memo: dict):
    """``("int", int64 values)`` or ``("text", (codes, texts))`` of one column as to_csv writes it; None if unsupported.

    Code -1 (a missing value) stands for ''.
    """
    dt = s.dtype
    if isinstance(dt, np.dtype) and dt.kind in "iu":
        v = s.to_numpy()
        if (dt.kind == "u" and dt.itemsize == 8 and len(v) and v.max() > np.iinfo(np.int64).max) or \
                (dt == np.int64 and len(v) and v.min() == np.iinfo(np.int64).min):
            return None
        return "int", v.astype(np.int64, copy=False)
    if isinstance(dt, np.dtype) and dt.kind == "f":
        return "text", _float_texts(s.to_numpy(), memo.setdefault(s.name, {}))
    if isinstance(dt, pd.CategoricalDtype):
        got = _string_texts(s.cat.codes.to_numpy(), dt.categories)
        return None if got is None else ("text", got)
    if isinstance(dt, pd.StringDtype) or dt == np.dtype(object):
        got = _string_texts(*pd.factorize(s, use_na_sentinel=True))
        return None if got is None else ("text", got)
    return None


@nb.njit(nogil=True, cache=True)
def _lines(kind, slot, ints, codes, table, lengths, base, n_rows):
    n_cols = kind.shape[0]
    size = 0
    for r in range(n_rows):  # first pass: the exact length
        for c in range(n_cols):
            if kind[c] == 0:
                v = ints[slot[c], r]
                if v < 0:
                    size += 1
                    v = -v
                size += 1
                while v >= 10:
                    v //= 10
                    size += 1
            else:
                size += lengths[base[c] + codes[slot[c], r]]
            size += 1  # ',' or '\n'
    out = np.empty(size, np.uint8)
    digits = np.empty(20, np.uint8)
    p = 0
    for r in range(n_rows):
        for c in range(n_cols):
            if kind[c] == 0:
                v = ints[slot[c], r]
                if v < 0:
                    out[p] = 45  # '-'
                    p += 1
                    v = -v
                k = 0
                while True:
                    digits[k] = 48 + v % 10
                    k += 1
                    v //= 10
                    if v == 0:
                        break
                for j in range(k - 1, -1, -1):
                    out[p] = digits[j]
                    p += 1
            else:
                u = base[c] + codes[slot[c], r]
                for j in range(lengths[u]):
                    out[p] = table[u, j]
                    p += 1
            out[p] = 44 if c < n_cols - 1 else 10  # ',' or '\n'
            p += 1
    return out


def csv_lines(df: pd.DataFrame, memo: dict | None = None) -> bytes | None:
    """The rows of ``df`` as ``df.to_csv(index=False, header=False)`` writes them, or None where only pandas can.

    None for a column that is not integers, floats, strings or categories of
    strings, a string the csv module would quote, numpy printing in a legacy
    mode, or a platform whose line end is not '\\n'. ``memo`` (a dict kept
    by the caller across the parts of one table) remembers float texts.
    """
    if os.linesep != "\n" or np.get_printoptions().get("legacy", False) is not False:
        return None
    memo = {} if memo is None else memo
    cols = []
    for name in df.columns:
        got = _column(df[name], memo)
        if got is None:
            return None
        cols.append(got)
    n = len(df)
    kind = np.array([0 if k == "int" else 1 for k, _ in cols], np.int64)
    ints = np.stack([v for k, v in cols if k == "int"]) if (kind == 0).any() else np.zeros((0, n), np.int64)
    texts = [v[1] for k, v in cols if k == "text"]
    width = max([t.dtype.itemsize for t in texts] + [1])
    table = np.zeros((sum(len(t) for t in texts) + len(texts), width), np.uint8)  # + one '' per column: code -1
    codes = np.zeros((len(texts), n), np.int64)
    base = np.zeros(len(cols), np.int64)
    slot = np.zeros(len(cols), np.int64)
    i_int = i_txt = at = 0
    for c, (k, v) in enumerate(cols):
        if k == "int":
            slot[c] = i_int
            i_int += 1
            continue
        col_codes, t = v
        w = t.dtype.itemsize
        if len(t):
            table[at:at + len(t), :w] = np.frombuffer(t.tobytes(), np.uint8).reshape(len(t), w)
        codes[i_txt] = np.where(np.asarray(col_codes) < 0, len(t), col_codes)  # -1: the empty text after them
        slot[c], base[c] = i_txt, at
        at += len(t) + 1
        i_txt += 1
    lengths = (table != 0).sum(axis=1).astype(np.int64)  # texts hold no NUL bytes: numpy pads with them
    return _lines(kind, slot, ints, codes, table, lengths, base, n).tobytes()
