"""Threshold calibration on a validation store (docs/methods.md section 3.1, Däubener et al. 2024 App. A).

For each uncertainty function, ``acc(theta)`` is the share of inputs whose
plain majority label (no test) over the first 1,000 rows of S (all of S if
fewer) equals the label, V counting as a label that is always wrong and
losing majority ties (it has the highest index). Theta walks 1,000
equidistant steps from loose to strict; the answer is the strictest theta
before the first one whose accuracy drops below ``(1 - loss) * A0``,
``A0 = acc(+inf)``. The result records the validation store's fingerprint,
so that certifying the same store at that theta can be flagged as post hoc.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np

from ..store import open_store

from . import uncertainty as U

STEPS = 1000
ROWS = 1000
DEFAULT_LOSSES = (0.01,)


def theta_grid(name: str, m: int, steps: int = STEPS) -> np.ndarray:
    """theta_k, k = 0..steps, from loose to strict: entropy ln(m)(1 - k/steps), confidence -(0.1 + 0.9 k/steps), margin -k/steps."""
    k = np.arange(steps + 1, dtype=np.float64)
    if name == "entropy":
        return math.log(m) * (1 - k / steps)
    if name == "confidence":
        return -(0.1 + 0.9 * k / steps)
    if name == "margin":
        return -k / steps
    raise ValueError(f"--uncertainty: {name!r} is not one of {', '.join(U.FUNCTIONS)}")


def majority_correct(counts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(B, ..., m + 1) extended counts -> bool: the majority label (ties to the lowest index, V last) equals the label."""
    maj = np.argmax(counts, axis=-1)
    lab = np.asarray(labels).reshape((-1,) + (1,) * (counts.ndim - 2))
    return maj == lab


def choose_theta(grid: np.ndarray, acc: np.ndarray, a0: float, loss: float):
    """(k, theta, kept accuracy): the strictest grid theta before the first k with acc < (1 - loss) A0.

    k = 0 failing gives (None, +inf, A0); no k failing gives the last theta.
    """
    fail = acc < (1 - loss) * a0
    if fail[0]:
        return None, math.inf, float(a0)
    if not fail.any():
        return len(grid) - 1, float(grid[-1]), float(acc[-1])
    k = int(np.argmax(fail)) - 1
    return k, float(grid[k]), float(acc[k])


def accuracy_curves(location, funcs, rows: int = ROWS, storage_options=None, block_size: int | None = None,
                    progress=None) -> dict:
    """Per function: (grid, acc over the grid, A0) on the store at ``location``; reads each input once.

    Every input must be complete and match its checksum (else StoreError naming it).
    Compact stores (top-k rows plus per-row entropy) give the same curves.
    """
    from types import SimpleNamespace

    funcs = list(dict.fromkeys(funcs))
    st = open_store(location, storage_options=storage_options)
    try:
        N, m, n0 = st.n_inputs, st.num_classes, st.n0
        compact = not st.layout.has_full_rows  # top-k rows plus per-row entropy: the same u values
        per_input = st.shape.total_rows * (64 if compact else m * 4)
        bs = int(block_size) if block_size else int(max(1, min(256, (64 * 2**20) // max(per_input, 1))))
        grids = {f: theta_grid(f, m) for f in funcs}
        hits = {f: np.zeros(STEPS + 1, np.int64) for f in funcs}
        hits0 = 0
        for s in range(0, N, bs):
            d = st.read_block(s, min(s + bs, N), fields=("argmax", "compact" if compact else "rows"), verify=True)
            blk = SimpleNamespace(argmax=d["argmax"], rows=d.get("rows"), m=m,
                                  compact={k: d[k] for k in ("topk_p", "topk_c", "entropy")} if compact else None)
            n_i = np.minimum(d["n_rows"] - n0, rows)
            stop = n0 + n_i
            c_inf = U.extended_counts_per_function_of(blk, n0, stop, funcs[:1], [[math.inf]])[0]
            hits0 += int(majority_correct(c_inf[:, 0], d["label"]).sum())
            curves = U.extended_counts_per_function_of(blk, n0, stop, funcs, [grids[f] for f in funcs])
            for f, c in zip(funcs, curves):  # c: (B, K, m + 1)
                hits[f] += majority_correct(c, d["label"]).sum(axis=0)
            if progress is not None:
                progress(len(d["label"]))
        fingerprint = st.fingerprint()
        info = {"num_inputs": N, "num_classes": m, "sigma": st.sigma, "n0": n0, "n": st.n}
    finally:
        st.close()
    return {"curves": {f: (grids[f], hits[f] / N) for f in funcs}, "A0": hits0 / N,
            "store_fingerprint": fingerprint, "info": info}


def calibrate(location, funcs=U.FUNCTIONS, losses=DEFAULT_LOSSES, rows: int = ROWS, storage_options=None,
              progress=None) -> dict:
    """Section 3.1 on the validation store at ``location``: the calibrated theta per function and loss.

    Returns a JSON-ready dict: the store, its fingerprint, and per (function,
    loss) ``k``, ``theta`` (``"inf"`` when even k = 0 loses accuracy), ``A0``
    and the kept accuracy; plus each function's accuracy curve.
    """
    losses = [float(x) for x in losses]
    for loss in losses:
        if not (0 <= loss < 1):
            raise ValueError(f"--loss must be in [0, 1), got {loss}")
    cur = accuracy_curves(location, funcs, rows=rows, storage_options=storage_options, progress=progress)
    a0 = cur["A0"]
    results = []
    for f, (grid, acc) in cur["curves"].items():
        for loss in losses:
            k, theta, kept = choose_theta(grid, acc, a0, loss)
            results.append({"uncertainty": f, "loss": loss, "k": k, "theta": theta, "A0": a0, "accuracy": kept})
    from ..store.locations import redact

    return {
        "kind": "smoothcert-calibration",
        "store": redact(location),
        "store_fingerprint": cur["store_fingerprint"],
        **cur["info"],
        "rows_used": f"first min({rows}, n) rows of S per input",
        "steps": STEPS,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results": results,
        "curves": {f: {"theta": g.tolist(), "accuracy": a.tolist()} for f, (g, a) in cur["curves"].items()},
    }


def format_results(calib: dict) -> str:
    """Plain-text table: uncertainty, loss, k, theta, A0 and kept accuracy (percent)."""
    lines = [f"{'uncertainty':<12}{'loss':>8}{'k':>7}{'theta':>22}{'A0':>9}{'accuracy':>10}"]
    for r in calib["results"]:
        k = "-" if r["k"] is None else str(r["k"])
        th = r["theta"]
        th = "inf" if (isinstance(th, str) or math.isinf(th)) else repr(float(th))
        lines.append(f"{r['uncertainty']:<12}{r['loss']:>8g}{k:>7}{th:>22}{100 * r['A0']:>8.2f}%{100 * r['accuracy']:>9.2f}%")
    return "\n".join(lines)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    return obj


def write_calibration(calib: dict, path) -> None:
    """Write the calibration as JSON (infinite thetas as the string ``"inf"``)."""
    Path(path).write_text(json.dumps(_json_safe(calib), indent=1) + "\n")


def load_calibration(path) -> dict:
    """Read a file written by ``write_calibration``; refuses anything else with a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--theta-from: {path} does not exist")
    try:
        calib = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--theta-from: {path} is not JSON ({e})") from None
    if not isinstance(calib, dict) or calib.get("kind") != "smoothcert-calibration" or "results" not in calib:
        raise ValueError(f"--theta-from: {path} is not a file written by 'smoothcert calibrate --json'")
    return calib


def calibrated_thetas(calib: dict, funcs, losses=None) -> dict:
    """{function: [theta per loss in the file order]} for ``funcs``; every function must be in the file."""
    out = {}
    for f in dict.fromkeys(funcs):
        vals = [float(r["theta"]) for r in calib["results"]
                if r["uncertainty"] == f and (losses is None or float(r["loss"]) in [float(x) for x in losses])]
        if not vals:
            have = sorted({r["uncertainty"] for r in calib["results"]})
            raise ValueError(f"--theta-from: no calibrated theta for {f!r} in the file (it has {', '.join(have)})")
        out[f] = vals
    return out


def post_hoc_warning(calib: dict, store_fingerprint: str, path) -> str | None:
    """The one-line warning when the thetas were calibrated on the store being certified, else None."""
    if calib.get("store_fingerprint") == store_fingerprint:
        return (f"smoothcert: warning: the thetas of {path} were calibrated on this same store "
                f"(fingerprint {store_fingerprint[:12]}): certifying at them is post-hoc selection; "
                f"calibrate on a separate validation store")
    return None


def apply_theta_from(opts, path, store_location, storage_options=None):
    """Set ``opts.theta_by_uncertainty`` from a calibration file; returns (meta record, warning or None).

    The warning (one line) is given when the file was calibrated on the very
    store being certified (equal fingerprints): that choice of theta is post hoc.
    """
    calib = load_calibration(path)
    opts.theta_by_uncertainty = calibrated_thetas(calib, opts.uncertainty)
    with open_store(store_location, storage_options=storage_options) as st:
        fp = st.fingerprint()
    warning = post_hoc_warning(calib, fp, path)
    info = {"file": str(path), "calibrated_on": calib.get("store"), "calibrated_on_fingerprint": calib.get("store_fingerprint"),
            "thetas": {f: [("inf" if math.isinf(t) else t) for t in v] for f, v in opts.theta_by_uncertainty.items()},
            "post_hoc": warning is not None}
    return info, warning
