"""Orchestration of a sampling run: the store (open or create, check, resume), the shard, the writer, the run record.

``sample(store, config)`` runs a ``SampleConfig`` (``sampler.config``): it
resolves the device and the shard, loads the data and the models
(``sampler.loops.Models``), opens or creates the store with the run's
metadata (refusing one made with other settings), and hands this shard's
incomplete inputs one by one to the batch loop (``sampler.loops``), which
fills a per-input row buffer on the device. The buffer is copied out once
and handed to a background writer thread through a bounded queue; the
writer calls ``SampleStore.write_input`` while the device computes the next
input. Every call is recorded in the store's ``runs`` (settings, status,
throughput).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from ..store import StoreError, create_store, open_store
from ..store import backend as _backend
from ..store.publish import built_aside

from . import noise as _noise
from .config import SampleConfig, row_batches  # noqa: F401  (row_batches: re-exported for bench/sampler.py)
from .data import fingerprint as data_fingerprint
from .data import indices_spec, load_data, parse_indices
from .host import keep_freed_memory
from .models import members_metadata
from .replay import REPLAY_ATTR, replay_fingerprint
from .shard import local_device_index, resolve_shard


@dataclass
class SampleResult:
    """What one ``sample`` call did."""

    store: str
    run_id: str
    shard: str
    n_inputs: int
    written: int
    skipped: int
    samples: int
    seconds: float
    samples_per_s: float
    complete: int
    device: str


# ------------------------------------------------------------------ helpers
def resolve_device(spec: str | None):
    """``auto`` -> cuda (torchrun's LOCAL_RANK-th GPU) if available, else cpu; otherwise the named device."""
    import torch

    if spec is None or spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_device_index() or 0)
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {spec}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_device_index() or 0)
    return dev


def _now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _short(v):
    """A sha256 hex digest shortened for messages; anything else unchanged."""
    return v[:12] + "..." if isinstance(v, str) and len(v) == 64 else v


def check_compatible(store, want: dict) -> None:
    """Raise StoreError naming every setting in which ``store`` differs from this run's ``want``."""
    a = store.attrs
    if a.get("source") != "sample":
        raise StoreError(f"store {store.location} was not written by the sampler (source {a.get('source')!r}); "
                         f"sample into a new STORE")
    labels = {
        "sigma": "sigma", "n0": "n0", "n": "n", "seed": "seed", "dtype": "dtype",
        "n_inputs": "number of inputs", "num_classes": "number of classes", "members": "number of models",
        "core_predict": "core model", "model_fingerprint": "model fingerprint",
        "member_fingerprints": "member model fingerprints", "core_model_fingerprint": "core model fingerprint",
        "data_fingerprint": "data fingerprint", "data_preprocessing": "data preprocessing",
        "indices": "indices", "noise_scheme": "noise scheme",
        "normalisation": "normalisation", "amp": "amp", "adaptive": "adaptive sampling rule",
        "layout": "layout", "topk": "top-k (--topk)",
        "replay_of": "replay of a base store with fingerprint",
    }
    diffs = []
    for key, label in labels.items():
        old, new = a.get(key), want.get(key)
        if key == "layout":                       # a full store has no layout attribute
            old, new = old or "full", new or "full"
        elif key == "topk":
            old, new = ("none" if v is None else v for v in (old, new))
        elif key == "replay_of":       # the base's fingerprint decides; its location is informative only
            old, new = replay_fingerprint(old), replay_fingerprint(new)
        if key == "sigma" and old is not None and new is not None:
            same = float(old) == float(new)
        else:
            same = old == new
        if not same:
            diffs.append(f"{label} {_short(old)}, this run asks for {_short(new)}")
    if diffs:
        raise StoreError(f"store {store.location} was made with " + "; with ".join(diffs))


def _store_exists(location: str, storage_options=None) -> bool:
    """True if ``location`` holds a zarr group; StoreError if it is a non-empty non-store path."""
    loc = str(location)
    if _backend.is_url(loc):
        import fsspec

        fs, path = fsspec.core.url_to_fs(loc, **(storage_options or {}))
        return fs.exists(path.rstrip("/") + "/zarr.json")
    p = _backend.local_path(loc)
    if _backend.is_zip(loc):
        return p.exists()
    if (p / "zarr.json").exists():
        return True
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise StoreError(f"{loc} exists and is not a zarr store; choose another STORE")
    return False


def open_or_create(location: str, *, storage_options=None, **create_kw):
    """Open ``location`` for writing, creating it if absent; a local folder store appears atomically.

    A local store is built in a hidden sibling folder and renamed into place,
    so concurrent shard processes agree on one store and a kill during
    creation never leaves a half-made store behind.
    """
    loc = str(location)
    if _store_exists(loc, storage_options):
        return open_store(loc, mode="a", storage_options=storage_options), False
    if _backend.is_url(loc) or _backend.is_zip(loc):
        # no atomic rename on object stores: if another shard process creates it at the same moment,
        # wait for its metadata to appear and use that store
        try:
            return create_store(loc, storage_options=storage_options, **create_kw), True
        except StoreError:
            deadline = time.monotonic() + 60
            while True:
                try:
                    return open_store(loc, mode="a", storage_options=storage_options), False
                except StoreError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
    p = _backend.local_path(loc)
    with built_aside(p) as tmp:                       # a sibling folder; what a killed creation left is removed
        create_store(tmp, **create_kw).close()
        try:
            os.rename(tmp, p)
            created = True
        except OSError:
            if not (p / "zarr.json").exists():
                raise
            created = False                           # another shard process won the race
    return open_store(loc, mode="a", storage_options=storage_options), created


# ------------------------------------------------------------------ writer
class _Writer(threading.Thread):
    """Writes finished inputs with ``SampleStore.write_input`` (the buffers' ``payload``) and recycles the buffers."""

    def __init__(self, store, work, free, R, on_written):
        super().__init__(name="smoothcert-writer", daemon=True)
        self.store, self.work, self.free, self.R = store, work, free, R
        self.on_written = on_written
        self.error = None
        self.written = 0
        self.rows_written = 0

    def run(self):
        while True:
            item = self.work.get()
            if item is None:
                return
            slot, idx, label, buf, r = item if len(item) == 5 else (*item, self.R)
            try:
                buf.wait()
                self.store.write_input(slot, label=label, idx=idx, n_rows=r, **buf.payload(r, idx))
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self.error = e
                self.free.put(buf)
                return
            self.written += 1
            self.rows_written += r
            self.free.put(buf)
            self.on_written(r)

    def check(self):
        if self.error is not None:
            e = self.error
            if isinstance(e, ValueError):
                raise e
            raise StoreError(f"writing to store {self.store.location} failed: {type(e).__name__}: {e}") from e


def _put(q, item, writer):
    """Put ``item`` on the bounded queue, re-raising the writer's error instead of blocking forever."""
    while True:
        writer.check()
        if not writer.is_alive() and item is not None:
            raise StoreError("the store writer stopped unexpectedly")
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _get(q, writer):
    """Take an item from ``q``, re-raising the writer's error instead of blocking forever."""
    while True:
        writer.check()
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            continue


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the sampler
def sample(store: str, config: SampleConfig | None = None, **settings) -> SampleResult:
    """Sample every selected input (of this shard) not yet complete in ``store`` and write it there.

    Call it with a ``SampleConfig`` (``sample(store, config)``), with its
    fields as keywords (``sample(store, models=..., data=..., sigma=...)``,
    as ``smoothcert sample`` takes them), or both: keywords then replace
    those fields of ``config`` (validated again). ``store`` is a folder, an
    fsspec URL, or a ``.zip`` file (sampled into the folder
    ``STORE.sampling``, packed into the zip once every input is complete).

    Guarantees:

    * Resume: creates the store on first use; on re-use checks that it was
      made with the same settings (else StoreError naming every setting that
      differs), skips complete inputs and redoes incomplete ones (an input
      cut short by a kill reads as incomplete), so re-running a call resumes
      it; shards may write into one store at the same time.
    * Determinism: the noise of row ``r`` of dataset index ``i`` is a pure
      function of (seed, i, r) and the input's shape (``sampler.noise``), and each input is
      computed in batches that depend only on the config (``SampleConfig.batches``),
      never on the other inputs: a subset, a shard, a resumed or an
      interrupted-and-resumed run writes the same bytes as one uninterrupted
      run with the same model on the same device (and torch thread count).
    * Adaptive (``adaptive_radius``): an input stops being sampled as soon
      as CERTIFYADP (docs/methods.md section 6: stages clipped to n, alpha,
      beta) decides, and only the rows drawn are stored (``n_rows``); batches
      are then also cut at the stage boundaries so that no row past a stage
      is drawn. ``certify --method adaptive`` with the same radius, stages,
      alpha and beta replays exactly these decisions.
    * Replay (``replay_of``, ``sampler.replay``): the models are evaluated on
      the base store's own noisy copies (its n0 selection rows and first n
      estimation rows, in its batches); every setting, the data and the
      selection are checked against the base before anything is written, and
      the store records ``replay_of`` (the base's location and fingerprint)
      at creation, for ``certify --method incremental --base BASE``.
    * Compact (``topk`` K): the store has layout ``compact-s0`` and its
      bytes equal ``store compact --topk K`` of the full store the same call
      without ``topk`` writes (every array chunk, every attribute but the
      provenance); full rows of the estimation block are never stored, and
      on an accelerator never copied to the host (``store/FORMAT.md``,
      "Sampling a compact store directly").

    Errors are one line: ValueError for a setting, the data or a model
    (naming it), StoreError for the store.
    """
    if config is None:
        cfg = SampleConfig(**settings)
    elif isinstance(config, SampleConfig):
        cfg = config.replace(**settings) if settings else config
    else:
        raise TypeError(f"sample: config must be a SampleConfig, got {type(config).__name__}")
    return _sample(store, cfg)


def _sample(store, cfg: SampleConfig) -> SampleResult:
    """``sample`` of a validated config: resolve, load, open or create the store, run the loop over the todo inputs."""
    import torch

    from .loops import load_models

    log = cfg.log or _log_to_stderr
    dev = resolve_device(cfg.device)
    sh = resolve_shard(cfg.shard)
    adaptive = cfg.adaptive_plan
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = False      # deterministic algorithms: the same command gives the same rows
        torch.backends.cudnn.deterministic = True

    # ---- data, models, fingerprints
    ds = load_data(cfg.data, resize=cfg.resize, crop=cfg.crop, classes=cfg.classes)
    for note in ds.notes:
        log(note)
    sel = parse_indices(cfg.indices, len(ds))
    ds.check(sel)
    x0, _ = ds.get(sel[0])
    models = load_models(cfg, dev, x0, sel[0], log)
    members, core = models.members, models.core
    m, k = models.num_classes, len(members)
    layout = None
    if cfg.topk is not None:
        from ..store.layouts import CompactFullS0
        from ..store.topk import MAX_TOPK

        if cfg.topk > min(m, MAX_TOPK):
            raise ValueError(f"--topk must be in 2..{min(m, MAX_TOPK)} for a model with {m} classes, got {cfg.topk}")
        if dev.type != "cpu" and cfg.dtype != "float16":
            raise ValueError(f"--topk on {dev} needs --dtype float16 (the device computes exact entropies of float16 "
                             f"rows only); sample with --dtype float16, or full rows and 'store compact'")
        layout = CompactFullS0(cfg.topk)

    def check_label(i):
        xi, yi = ds.get(i)
        if yi >= m:
            raise ValueError(f"data {ds.spec}: input {i} has label {yi}, but the model has {m} classes (0..{m - 1})")
        if xi.shape != x0.shape:
            raise ValueError(f"data {ds.spec}: input {i} has shape {tuple(xi.shape)}, input {sel[0]} has {tuple(x0.shape)}")
        return xi, yi

    # also checks every label and shape
    dfp = data_fingerprint(SimpleNamespace(get=check_label, preprocessing=ds.preprocessing), sel)
    mfps = [lm.fingerprint for lm in members]
    meta = {
        "source": "sample",
        "seed": cfg.seed,
        "model": members[0].spec if k == 1 else [lm.spec for lm in members],
        "weights": [lm.weights for lm in members] if k > 1 else members[0].weights,
        "model_fingerprint": mfps[0] if k == 1 else hashlib.sha256("\n".join(mfps).encode()).hexdigest(),
        "member_fingerprints": mfps if k > 1 else None,
        "core_model": core.spec if core else None,
        "core_model_fingerprint": core.fingerprint if core else None,
        "data": ds.spec,
        "data_fingerprint": dfp,
        "data_preprocessing": ds.preprocessing,
        "indices": indices_spec(sel),
        "input_shape": list(x0.shape),
        "noise_scheme": _noise.SCHEME,
        "noise_space": "[0, 1] pixels, x + sigma * eps, unclipped; normalisation applied after the noise",
        **members_metadata(members),       # model_checkpoint (arch, sha256, ...) and the normalisation inside the model(s)
        "amp": cfg.amp,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "rows": "softmax of the model" if k == 1 else "softmax of the mean of the members' log-softmax",
    }
    if adaptive is not None:
        meta["adaptive"] = adaptive
    if cfg.replay_of is not None:    # a replay (sampler/replay.py): checked against BASE before anything is written
        from .replay import check_run

        meta[REPLAY_ATTR] = check_run(cfg, meta, m, len(sel), dev, log)
    n0, n, sigma, dtype = cfg.n0, cfg.n, cfg.sigma, cfg.dtype
    stored_members = k if k > 1 and layout is None else 0          # a compact store keeps no member rows
    create_kw = dict(n_inputs=len(sel), n0=n0, n=n, num_classes=m, sigma=sigma, dtype=dtype,
                     members=stored_members, core_predict=core is not None, metadata=meta, layout=layout)
    want = dict(meta, sigma=sigma, n0=n0, n=n, dtype=dtype, n_inputs=len(sel), num_classes=m,
                members=stored_members, core_predict=core is not None, **(layout.attrs() if layout else {}))
    zip_target = _backend.is_zip(str(store)) and not _backend.is_url(str(store))
    target = str(store)
    if zip_target:
        # a zip cannot be rewritten in place: sample into a folder beside it, pack it when every input is done
        if Path(target).exists():
            with open_store(target) as zst:
                check_compatible(zst, want)
                done = zst.complete_mask()
            if not done.all():
                raise StoreError(f"store {target} is an incomplete zip; sample into a folder store instead")
            log(f"smoothcert sample: store {target} is complete ({len(done)}/{len(done)} inputs); nothing to do")
            return SampleResult(store=target, run_id="", shard=str(sh), n_inputs=len(done), written=0,
                                skipped=len(done), samples=0, seconds=0.0, samples_per_s=0.0,
                                complete=len(done), device=str(dev))
        target = zip_staging(target)
    st, created = open_or_create(target, storage_options=cfg.storage_options, **create_kw)
    try:
        if not created:
            check_compatible(st, want)
        res = _run(st, cfg, sh, sel, check_label, models, log)
        complete = bool(st.complete_mask().all())
    finally:
        st.close()
    if zip_target and complete:
        _pack_zip(target, str(store), log)
        res.store = str(store)
    return res


def zip_staging(zip_location: str) -> str:
    """The folder store a ``.zip`` STORE is sampled into until every input is complete."""
    p = Path(zip_location)
    return str(p.with_name(p.name + ".sampling"))


def _pack_zip(folder: str, zip_location: str, log) -> None:
    """Pack the complete folder store into ``zip_location`` (tolerating another shard packing it first) and remove the folder."""
    from ..store.share import export_zip

    try:
        export_zip(folder, zip_location)
    except (StoreError, FileNotFoundError, OSError):
        if not Path(zip_location).exists():    # another shard process packed it at the same moment
            raise
    shutil.rmtree(folder, ignore_errors=True)
    log(f"smoothcert sample: every input complete; packed {folder} into {zip_location}")



def _run(st, cfg: SampleConfig, sh, sel, get_input, models, log) -> SampleResult:
    """This shard's incomplete slots of ``st`` through the batch loop and the writer; records the call as a run.

    ``get_input(idx)`` gives (pixels, label) of dataset index ``idx``;
    ``models`` is ``loops.load_models``'s. Returns what the call did.
    """
    import torch
    from tqdm import tqdm

    from .loops import make_loop

    dev, R, n0 = models.device, cfg.rows_per_input, cfg.n0
    k, adaptive = len(models.members), cfg.adaptive_plan
    N = len(sel)
    complete = st.complete_mask()        # a record cut short by a kill reads as incomplete
    mine = list(sh.slots(N))
    todo = [s for s in mine if not complete[s]]
    skipped = len(mine) - len(todo)
    run_id = f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}-{platform.node() or 'host'}-{os.getpid()}"
    record = {"started": _now(), "status": "running", "shard": str(sh), "shard_source": sh.source,
              "device": str(dev), "batch_size": cfg.batch_size, "amp": cfg.amp, "channels_last": models.channels_last,
              "torch_threads": torch.get_num_threads(), "host": platform.node(), "pid": os.getpid(),
              "inputs_todo": len(todo), "inputs_skipped": skipped, "noise_scheme": _noise.SCHEME,
              "noise_impl": "numba" if dev.type == "cpu" else "torch"}
    if cfg.topk is not None:   # where the compact rows are computed (what crosses from the device: FORMAT.md)
        record["topk"] = cfg.topk
        record["topk_impl"] = "numba on cpu" if dev.type == "cpu" and k == 1 else f"torch on {dev}"
    st.add_run(run_id, record)
    if dev.type == "cpu":
        _noise.warm_up()
        record["malloc_tuned"] = keep_freed_memory()     # freed activations stay in the heap between batches

    tty = sys.stderr.isatty()
    pbar = tqdm(total=len(todo) * R, unit="sample", unit_scale=True, desc=f"sampling (shard {sh})" if sh.n > 1 else "sampling",
                disable=not cfg.progress or not todo, mininterval=0.5 if tty else 30.0, file=sys.stderr,
                dynamic_ncols=True)
    done = [0]

    def on_written(r=R):
        done[0] += 1
        pbar.update(r)
        pbar.set_postfix_str(f"inputs {done[0]}/{len(todo)}", refresh=False)

    loop = make_loop(cfg, models)
    queue_size = max(1, cfg.queue_size)
    free, work = queue.Queue(), queue.Queue(maxsize=queue_size)
    for _ in range(queue_size + 1):
        free.put(loop.make_buffers())
    writer = _Writer(st, work, free, R, on_written)
    writer.start()
    t0 = time.perf_counter()
    status = "failed"
    try:
        for slot in todo:
            idx = sel[slot]
            x, y = get_input(idx)
            buf = _get(free, writer)
            r_drawn = loop.fill(buf, x, idx)
            buf.stage()
            _put(work, (slot, idx, y, buf, r_drawn), writer)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if writer.is_alive():
            try:
                work.put(None, timeout=60)
            except queue.Full:
                pass
            writer.join()
        pbar.close()
        seconds = time.perf_counter() - t0
        written = writer.written
        drawn = writer.rows_written
        rate = drawn / seconds if seconds > 0 else 0.0
        record.update({"finished": _now(), "status": status if writer.error is None else "failed",
                       "inputs_written": written, "samples": drawn, "seconds": round(seconds, 3),
                       "samples_per_s": round(rate, 1)})
        if adaptive is not None:
            record["adaptive_sample_rf"] = round((written * (R - n0)) / max(drawn - written * n0, 1), 4)
        try:
            st.add_run(run_id, record)
        except Exception:
            pass
    writer.check()
    n_complete = int(st.complete_mask().sum())
    if adaptive is not None and written:
        log(f"smoothcert sample: adaptive (radius {adaptive['radius']:g}, stages "
            f"{'+'.join(map(str, adaptive['stages']))}): {drawn - written * n0:,} rows of S drawn instead of "
            f"{written * (R - n0):,} (SampleRF {(written * (R - n0)) / max(drawn - written * n0, 1):.2f})")
    log(f"smoothcert sample: {written} inputs ({drawn:,} noisy samples) in {seconds:.1f} s, "
        f"{rate:,.0f} samples/s on {dev}; {skipped} already complete; "
        f"store {st.location}: {n_complete}/{N} inputs complete")
    return SampleResult(store=st.location, run_id=run_id, shard=str(sh), n_inputs=N, written=written,
                        skipped=skipped, samples=drawn, seconds=seconds, samples_per_s=rate,
                        complete=n_complete, device=str(dev))
