"""Certificates on several prefixes of the estimation block, with a guarantee over all of them (docs/methods.md section 11).

A store fixes the order of its rows, so "what if I had sampled only t
rows" is a prefix. Looking at several prefixes and keeping the best one is a
multiple comparison; the options here keep the table's stated confidence:

- ``--n-use t1,t2,...`` (a list): one certificate per input, setting and
  prefix t, in setting column ``n_use``. With ``--interval cp`` (default)
  every test and bound that a method runs on the estimation rows runs at
  ``alpha / L`` (L listed prefixes; Bonferroni, valid for nested prefixes of
  one sample since it needs no independence); tests on the selection block
  S0 stay at alpha (S0 is the same for every prefix). A method gets this by
  running on a copy of the options whose ``alpha`` is divided by L and whose
  ``alpha_s0`` keeps the undivided level: a method that reads only
  ``alpha`` spends alpha/L everywhere (sound, and exact for methods without
  tests on S0); ``two-step`` and ``uncertainty`` read ``s0_opts`` for S0.
- ``--interval cs`` (``cohen`` and ``two-step``): the Clopper-Pearson bounds
  are replaced by the confidence sequence of ``stats.confseq``, valid for
  every prefix t = 1..n at once, so nothing is split over the list and any
  number of prefixes may be looked at (and a certificate may be stopped at
  the first prefix where it holds).

A single ``--n-use N`` (an int, not a list) behaves exactly as before: no
``n_use`` column, no split. The list form, even of one value (``--n-use
1000,``), adds the ``n_use`` column. The list is sorted ascending; repeated
values are refused.
"""
from __future__ import annotations

import dataclasses

import numpy as np

INTERVALS = ("cp", "cs")
CS_METHODS = ("cohen", "two-step")  # methods whose bounds on S have a confidence-sequence form
LIST_REFUSED = ("adaptive",)  # its stages are already prefixes, with their own split


def parse_n_use(text):
    """``--n-use`` text: ``'1000'`` -> 1000 (one prefix, as before); ``'1000,10000'`` or ``'1000,'`` -> a list."""
    if text is None:
        return None
    if isinstance(text, (int, np.integer)):
        return int(text)
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    s = str(text).strip()
    try:
        if "," not in s:
            return int(s)
        return [int(v) for v in s.split(",") if v.strip() != ""]
    except ValueError:
        raise ValueError(f"--n-use: expected an integer or a comma-separated list of integers, got {s!r}") from None


def prefix_list(opts) -> list[int] | None:
    """The listed prefixes, ascending, or None when ``--n-use`` is a single value (or absent)."""
    v = opts.n_use
    if v is None or isinstance(v, (int, np.integer)):
        return None
    return sorted(int(x) for x in v)


def check_n_use(value) -> None:
    """Option-level check of ``n_use`` (an int or a non-empty list of distinct positive ints); ValueError in one line."""
    if value is None:
        return
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ValueError(f"--n-use must be at least 1, got {value}")
        return
    vals = [int(v) for v in value]
    if not vals:
        raise ValueError("--n-use: the list is empty; give at least one prefix length")
    if min(vals) < 1:
        raise ValueError(f"--n-use must be at least 1, got {min(vals)} in {','.join(map(str, vals))}")
    if len(set(vals)) != len(vals):
        dup = next(v for v in vals if vals.count(v) > 1)
        raise ValueError(f"--n-use: prefix {dup} is listed twice in {','.join(map(str, vals))}")


def check(method, opts, store_n: int) -> int:
    """Refuse what this method or store cannot do with ``--n-use``/``--interval``; returns the largest prefix used.

    ``adaptive`` refuses a list; methods without a confidence-sequence form
    refuse ``--interval cs``; every prefix must be at most the store's n.
    """
    interval = getattr(opts, "interval", "cp")
    if interval not in INTERVALS:
        raise ValueError(f"--interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    if interval == "cs" and method.name not in CS_METHODS:
        raise ValueError(f"--interval cs is available for --method {' and '.join(CS_METHODS)} only, not {method.name}")
    plist = prefix_list(opts)
    if plist is not None and method.name in LIST_REFUSED:
        raise ValueError(f"--method {method.name} takes a single --n-use (its --stages are already prefixes, with "
                         f"their own alpha split), got the list {','.join(map(str, opts.n_use))}")
    if opts.n_use is None:
        return int(store_n)
    for t in plist if plist is not None else [int(opts.n_use)]:
        if t > store_n:
            raise ValueError(f"--n-use {t} exceeds the store's n = {store_n}")
    return max(plist) if plist is not None else int(opts.n_use)


def split_over_list(opts) -> int:
    """L when the bounds on S run at alpha / L (a list of L > 1 prefixes under ``--interval cp``), else 1."""
    plist = prefix_list(opts)
    if plist is None or getattr(opts, "interval", "cp") == "cs":
        return 1
    return len(plist)


def s0_opts(opts):
    """The options whose ``alpha`` is the level of tests on S0: ``opts`` itself unless a prefix list split alpha on S."""
    a0 = getattr(opts, "alpha_s0", None)
    return opts if a0 is None else opts.replace(alpha=a0, alpha_s0=None)


def compute(method, block, opts):
    """``method.compute`` once per listed prefix (alpha split as the module says), rows concatenated with ``n_use``.

    Without a list this is ``method.compute(block, opts)``. Rows come prefix by
    prefix; the engine's stable sort by input then puts, within each input,
    the prefixes in ascending order and the method's settings within each.
    """
    plist = prefix_list(opts)
    if plist is None:
        return method.compute(block, opts)
    import pandas as pd  # not at the top: the command line reads INTERVALS and the --n-use parser from here

    L = split_over_list(opts)
    parts = []
    for t in plist:
        b = dataclasses.replace(block, n_use=int(t))
        o = opts.replace(n_use=int(t))
        if L > 1:
            o = o.replace(alpha=opts.alpha / L, alpha_s0=opts.alpha)
        df = method.compute(b, o)
        df["n_use"] = np.int64(t)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def meta(opts, level: float, text: str) -> tuple[dict, str]:
    """Sidecar entries for the prefixes and interval, and the confidence statement amended to say over what it holds."""
    interval = getattr(opts, "interval", "cp")
    plist = prefix_list(opts)
    out = {"interval": interval}
    if interval == "cs":
        text += ("; for every prefix simultaneously: the bounds on S are a confidence sequence (beta-binomial mixture, "
                 "Howard et al. 2021), valid for all n_use = 1..n at once, so any prefixes may be looked at and a "
                 "certificate may be stopped at the first prefix where it holds")
        if plist is not None:
            out["prefixes"] = {"n_use": plist, "split": 1, "guarantee": "for every prefix simultaneously"}
    elif plist is not None:
        L = len(plist)
        if L > 1:
            text += (f"; jointly over the {L} listed prefixes n_use = {','.join(map(str, plist))} (Bonferroni: every "
                     f"test and bound on S at alpha/{L} = {opts.alpha / L:g}; tests on S0 at alpha)")
        out["prefixes"] = {"n_use": plist, "split": L, "alpha_on_s": opts.alpha / L,
                           "guarantee": f"jointly over the {L} listed prefixes (Bonferroni)" if L > 1
                           else "one prefix: as without a list"}
    return out, text
