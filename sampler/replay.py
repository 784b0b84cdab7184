"""Replay sampling: a changed model on a base store's own noisy copies (``smoothcert sample --replay-of BASE``).

A replay store OUT holds a changed model f' (quantized, pruned, fine-tuned)
evaluated on exactly the noisy copies of a base store BASE of the original
model: BASE's n0 selection copies and its first P estimation copies
(P = OUT's n <= BASE's n). The noise of row r of dataset index i is a pure
function of (seed, noise scheme, i, r) and the input's shape
(``sampler.noise``), so a replay is an ordinary sampling run with BASE's
sigma, seed, n0, indices and data and ``n = P``. OUT is an ordinary store of
f' that also records, at creation, which store it replays
(store/FORMAT.md, "Replay stores")::

    "replay_of": {"location": <BASE, credentials removed>, "fingerprint": <BASE's SampleStore.fingerprint()>}

which ``smoothcert certify OUT --method incremental --base BASE`` checks
(docs/methods.md section 10, docs/incremental.md).

Two checks, both before anything is written:

* ``base_settings`` + ``resolve`` (when the ``SampleConfig`` is built): BASE
  opens, was written by the sampler with this noise scheme, is complete and
  not adaptive; sigma, seed, n0 and indices not given are taken from BASE,
  given ones must equal BASE's; P = n is given and at most BASE's n.
* ``check_run`` (when the run has loaded the data and the models): the data
  fingerprint, the selected indices, the input shape, the number of classes
  and inputs equal BASE's, and BASE (read again) is still complete and
  unchanged in those settings; returns the ``replay_of`` record.

Each refusal is one ValueError line naming the setting and both values.
Imports only the store layer (and ``sampler.noise`` for the scheme name).
"""
from __future__ import annotations

import numpy as np

REPLAY_ATTR = "replay_of"    # the group attribute certify --method incremental reads (store/FORMAT.md)

# settings a replay takes from BASE when not given, and refuses when given and different
INHERITED = ("sigma", "seed", "n0", "indices", "data")
# BASE attributes a sampled store carries and a replay needs
_NEEDED = ("seed", "noise_scheme", "indices", "data_fingerprint", "input_shape")


def _short(v):
    """A sha256 hex digest shortened for messages; anything else unchanged."""
    return v[:12] + "..." if isinstance(v, str) and len(v) == 64 else v


def _where(location) -> str:
    from ..store.locations import redact

    return f"--replay-of {redact(location)}"


def base_settings(location, storage_options=None) -> dict:
    """BASE's settings that a replay of it needs, after checking that BASE can be replayed.

    Returns ``{"location", "n", "n0", "sigma", "seed", "indices", "data",
    "data_fingerprint", "input_shape", "noise_scheme", "num_classes",
    "n_inputs", "device", "data_preprocessing", "fingerprint"}`` (``fingerprint``:
    ``SampleStore.fingerprint()`` of BASE now). ValueError (one line) if
    BASE cannot be opened, was not written by ``smoothcert sample`` (no
    seed, noise scheme, indices or data fingerprint), was drawn with another
    noise scheme than this smoothcert's, was sampled adaptively, or has an
    incomplete input. Reads only BASE's metadata and per-input records.
    """
    from ..store import StoreError, open_store
    from . import noise as _noise

    where = _where(location)
    try:
        base = open_store(str(location), storage_options=storage_options)
    except (StoreError, OSError) as e:
        raise ValueError(f"{where}: cannot open the base store ({' '.join(str(e).split())[:200]})") from None
    with base:
        a = base.attrs
        missing = [k for k in _NEEDED if a.get(k) is None]
        if missing:
            raise ValueError(f"{where}: BASE was not written by smoothcert sample (source {a.get('source')!r}, no "
                             f"{', '.join(missing)}), so its noisy copies cannot be regenerated")
        if a["noise_scheme"] != _noise.SCHEME:
            raise ValueError(f"{where}: BASE's noise scheme is {a['noise_scheme']}, this smoothcert draws "
                             f"{_noise.SCHEME}; its noisy copies cannot be regenerated")
        if a.get("adaptive") is not None:
            raise ValueError(f"{where}: BASE was sampled adaptively (--adaptive-radius): its inputs stop at "
                             f"different rows, and the incremental certificate needs all n0 + n rows of BASE")
        rec = base.read_records()
        bad = np.flatnonzero(rec["complete"] != 1)
        if len(bad):
            raise ValueError(f"{where}: {len(bad)} of {base.n_inputs} inputs of BASE are incomplete (first: slot "
                             f"{int(bad[0])}); finish sampling BASE first (its fingerprint changes until then)")
        short = np.flatnonzero(rec["n_rows"] != base.n0 + base.n)
        if len(short):
            s = int(short[0])
            raise ValueError(f"{where}: input {int(rec['idx'][s])} of BASE has {int(rec['n_rows'][s])} rows, not "
                             f"n0 + n = {base.n0 + base.n} (adaptive sampling?); a replay needs a BASE with all rows")
        return {"location": str(location), "n": base.n, "n0": base.n0, "sigma": base.sigma, "seed": int(a["seed"]),
                "indices": a["indices"], "data": a.get("data"), "data_fingerprint": a["data_fingerprint"],
                "input_shape": list(a["input_shape"]), "noise_scheme": a["noise_scheme"],
                "num_classes": base.num_classes, "n_inputs": base.n_inputs, "device": a.get("device"),
                "data_preprocessing": a.get("data_preprocessing"), "fingerprint": base.fingerprint(rec)}


def resolve(base: dict, given: dict, n) -> dict:
    """The settings of a replay of ``base`` (``base_settings``): each of ``INHERITED`` from ``given``, or BASE's.

    ``given`` maps each name of ``INHERITED`` to the value asked for, None
    when not given; ``n`` is P. Pure. Guarantee: the returned sigma, seed
    and n0 equal BASE's; indices and data are BASE's when not given (given
    ones are checked against BASE's selection and data fingerprint by
    ``check_run``, which needs the data); P is an integer in 1..BASE's n.
    ValueError (one line, naming the option and both values) otherwise.
    """
    where = _where(base["location"])
    out = {}
    for name in INHERITED:
        v, b = given.get(name), base[name]
        if v is None:
            if b is None:
                raise ValueError(f"{where}: BASE records no {name}; give --{name}")
            out[name] = b
            continue
        if name == "sigma":
            same = float(v) == float(b)
        elif name in ("seed", "n0"):
            same = int(v) == v and int(v) == int(b)
        else:
            same = True    # indices and data: compared by selection and fingerprint once the data is loaded
        if not same:
            raise ValueError(f"{where}: --{name} {v} differs from BASE's {name} {b} (a replay evaluates BASE's own "
                             f"noisy copies; leave --{name} out to take BASE's)")
        out[name] = v
    if n is None:
        raise ValueError(f"{where}: give --n P, how many of BASE's estimation rows to replay (1..{base['n']})")
    if int(n) != n or n < 1:
        raise ValueError(f"--n must be an integer >= 1, got {n}")
    if n > base["n"]:
        raise ValueError(f"{where}: --n {int(n)} exceeds BASE's n = {base['n']} (a replay evaluates the first P "
                         f"of BASE's estimation rows, P <= {base['n']})")
    return out


def check_run(cfg, meta: dict, num_classes: int, n_inputs: int, device, log) -> dict:
    """At run time, before OUT is opened: this run's data, selection and model against BASE (read again).

    ``meta`` is the run's store metadata (``data_fingerprint``, ``indices``,
    ``input_shape``, ``seed``, ``noise_scheme``); ``num_classes`` the
    model's; ``n_inputs`` the selection's size. Returns the ``replay_of``
    record to write into OUT: BASE's location (credentials removed) and its
    fingerprint now. ValueError (one line, both values) on any difference.
    Notes through ``log`` when BASE was sampled on another kind of device:
    its noise may then differ in the last bit of a float32 (store/FORMAT.md,
    "Noise scheme"), so the unchanged model would not reproduce BASE's rows
    byte for byte.
    """
    from ..store.locations import redact

    base = base_settings(cfg.replay_of, cfg.storage_options)
    where = _where(cfg.replay_of)
    pairs = (("sigma", "sigma", cfg.sigma), ("seed", "seed", cfg.seed), ("n0", "n0", cfg.n0),
             ("noise_scheme", "noise scheme", meta["noise_scheme"]), ("indices", "indices", meta["indices"]),
             ("n_inputs", "number of inputs", n_inputs), ("input_shape", "input shape", list(meta["input_shape"])),
             ("data_fingerprint", "data fingerprint", meta["data_fingerprint"]),
             ("num_classes", "number of classes", num_classes))
    for key, label, mine in pairs:
        b = base[key]
        same = float(b) == float(mine) if key == "sigma" else b == mine
        if same:
            continue
        if key in ("indices", "n_inputs"):
            raise ValueError(f"{where}: --indices selects {meta['indices']} ({n_inputs} inputs), BASE's indices are "
                             f"{base['indices']} ({base['n_inputs']} inputs)")
        if key == "data_fingerprint":
            raise ValueError(f"{where}: --data {cfg.data} differs from BASE's data {base['data']} (data fingerprint "
                             f"{_short(mine)} here, {_short(b)} in BASE)")
        if key == "num_classes":
            raise ValueError(f"{where}: the model has {mine} classes, BASE's model {b}")
        raise ValueError(f"{where}: {label} {_short(mine)} here, {_short(b)} in BASE")
    if cfg.n > base["n"]:
        raise ValueError(f"{where}: --n {cfg.n} exceeds BASE's n = {base['n']} (a replay evaluates the first P "
                         f"of BASE's estimation rows, P <= {base['n']})")
    bdev, dev = str(base.get("device") or ""), str(device)
    if bdev and bdev.split(":")[0] != dev.split(":")[0]:
        log(f"smoothcert sample: note: BASE was sampled on {bdev}, this replay runs on {dev}: the noise of the two "
            f"devices may differ in the last bit of a float32, so rows are BASE's copies up to that rounding")
    return {"location": redact(cfg.replay_of), "fingerprint": base["fingerprint"]}


def replay_fingerprint(record):
    """The BASE fingerprint a ``replay_of`` record names (None for no record): what a resumed run must match."""
    return record.get("fingerprint") if isinstance(record, dict) else record
