"""The sampling loop: every selected input evaluated once on its n0 + n noisy copies, into the store.

Per input, the rows are computed in batches of ``batch_size`` noisy copies on
the device (noise, forward pass, softmax and the argmax of the full-precision
softmax all stay there), gathered in a per-input device buffer, copied out
once, and handed to a background writer thread through a bounded queue; the
writer calls ``SampleStore.write_input`` while the device computes the next
input. An input's batches depend only on (n0 + n, batch_size), never on the
other inputs, so a subset or a shard computes exactly the same tensors.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import platform
import queue
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..store import StoreError, create_store, open_store
from ..store import backend as _backend
from ..store import format as _F

from . import noise as _noise
from .data import fingerprint as data_fingerprint
from .data import indices_spec, load_data, parse_indices
from .host import keep_freed_memory
from .models import check_normalisation, load_model, pair_weights
from .shard import local_device_index, resolve_shard

AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


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


def amp_context(dev, amp: str | None):
    """The autocast context of ``--amp`` on device ``dev`` (a no-op context without it)."""
    if not amp:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=dev.type, dtype=getattr(torch, AMP_DTYPES[amp]))


def row_batches(total_rows: int, batch_size: int):
    """The (start, stop) row ranges of one input's batches: a function of its row count and the batch size only."""
    return [(a, min(a + batch_size, total_rows)) for a in range(0, total_rows, batch_size)]


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
        "data_fingerprint": "data fingerprint", "indices": "indices", "noise_scheme": "noise scheme",
        "normalisation": "normalisation", "amp": "amp", "adaptive": "adaptive sampling rule",
    }
    diffs = []
    for key, label in labels.items():
        old, new = a.get(key), want.get(key)
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


def _pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    p.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{p.name}.creating-"
    for stale in p.parent.glob(prefix + "*"):       # left by a process killed while creating
        try:
            pid = int(stale.name[len(prefix):].split("-")[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = p.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    st = create_store(str(tmp), **create_kw)
    st.close()
    created = True
    try:
        os.rename(tmp, p)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (p / "zarr.json").exists():
            raise
        created = False                               # another shard process won the race
    return open_store(loc, mode="a", storage_options=storage_options), created


# ------------------------------------------------------------------ buffers and writer
class _Buffers:
    """One input's rows on the device, and (on an accelerator) their pinned host copy."""

    def __init__(self, R, m, k, row_dtype, device, with_core):
        import torch

        self.device = device
        tdt = getattr(torch, row_dtype)
        self.rows = torch.empty((R, m), dtype=tdt, device=device)
        self.arg = torch.empty((R,), dtype=torch.int32, device=device)
        self.mem = torch.empty((R, k, m), dtype=torch.float32, device=device) if k > 1 else None
        self.core = torch.full((1,), -1, dtype=torch.int64, device=device) if with_core else None
        self.on_host = device.type == "cpu"
        if self.on_host:
            self.h_rows, self.h_arg, self.h_mem, self.h_core = self.rows, self.arg, self.mem, self.core
        else:
            pin = device.type == "cuda"
            self.h_rows = torch.empty(self.rows.shape, dtype=tdt, pin_memory=pin)
            self.h_arg = torch.empty(self.arg.shape, dtype=torch.int32, pin_memory=pin)
            self.h_mem = torch.empty(self.mem.shape, dtype=torch.float32, pin_memory=pin) if self.mem is not None else None
            self.h_core = torch.empty((1,), dtype=torch.int64, pin_memory=pin) if with_core else None
        self.event = None

    def stage(self):
        """Start copying the device rows to the host (asynchronous on CUDA)."""
        import torch

        if self.on_host:
            return
        nb = self.device.type == "cuda"
        for d, h in ((self.rows, self.h_rows), (self.arg, self.h_arg), (self.mem, self.h_mem), (self.core, self.h_core)):
            if d is not None:
                h.copy_(d, non_blocking=nb)
        if nb:
            self.event = torch.cuda.Event()
            self.event.record()

    def wait(self):
        """Block until the host copy is complete (releases the GIL)."""
        if self.event is not None:
            self.event.synchronize()
            self.event = None
        elif not self.on_host and self.device.type not in ("cuda",):
            import torch

            getattr(torch, self.device.type).synchronize()


class _Writer(threading.Thread):
    """Writes finished inputs with ``SampleStore.write_input`` and recycles their buffers."""

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
                rows = buf.h_rows.numpy()[:r]
                if not np.isfinite(rows).all():
                    bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
                    raise ValueError(f"the model's output on input {idx} (row {bad}) is not finite; nothing written for it")
                self.store.write_input(
                    slot,
                    rows=rows,
                    argmax=buf.h_arg.numpy()[:r],
                    label=label,
                    idx=idx,
                    member_logprobs=buf.h_mem.numpy()[:r] if buf.h_mem is not None else None,
                    core_predict=int(buf.h_core[0]) if buf.h_core is not None else None,
                    n_rows=r,
                )
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


# ------------------------------------------------------------------ the sampler
def sample(store: str, *, models, data: str, sigma: float, weights=(), mean=None, std=None,
           n0: int = 100, n: int = 100_000, batch_size: int = 1000, seed: int = 0, device: str = "auto",
           indices: str | None = None, dtype: str = _F.DEFAULT_SAMPLER_DTYPE, shard: str | None = None,
           core_model: str | None = None, core_weights: str | None = None, amp: str | None = None,
           channels_last: bool | None = None, progress: bool = True, queue_size: int = 2,
           storage_options: dict | None = None, log=None, adaptive_radius: float | None = None,
           adaptive_stages=(1_000, 10_000, 125_000), adaptive_alpha: float = 0.001,
           adaptive_beta: float = 0.0001) -> SampleResult:
    """Sample every selected input (of this shard) not yet complete in ``store`` and write it there.

    Creates the store on first use; on re-use checks that it was made with the
    same settings (else StoreError saying what differs), skips complete inputs
    and redoes incomplete ones, so re-running a command resumes it.

    With ``adaptive_radius`` an input stops being sampled as soon as
    CERTIFYADP (docs/methods.md section 6: stages clipped to n, alpha, beta)
    decides, and only the rows drawn are stored (``n_rows``); batches are then
    also cut at the stage boundaries so that no row past a stage is drawn.
    ``certify --method adaptive`` with the same radius, stages, alpha and beta
    replays exactly these decisions. ``adaptive_stages``: a sequence of ints or
    their text (``"1000,10000,125000"``).
    """
    import torch

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise ValueError("give at least one --model")
    sigma = float(sigma)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"--sigma must be a positive number, got {sigma}")
    for name, v, lo in (("--n0", n0, 1), ("--n", n, 1), ("--batch-size", batch_size, 1)):
        if int(v) != v or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v}")
    n0, n, batch_size, seed = int(n0), int(n), int(batch_size), int(seed)
    if dtype not in _F.ROW_DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(_F.ROW_DTYPES)}, got {dtype}")
    if amp is not None and amp not in AMP_DTYPES:
        raise ValueError(f"--amp must be bf16 or fp16, got {amp}")
    _noise.input_key(seed, 0)                                   # validates the seed's range
    dev = resolve_device(device)
    sh = resolve_shard(shard)
    R = n0 + n
    adaptive = None
    if adaptive_radius is not None:
        from ..stats.adaptive import online_plan
        from ..parsing import parse_int_list

        adaptive = online_plan(adaptive_radius, parse_int_list(adaptive_stages, "adaptive-stages"), adaptive_alpha,
                               adaptive_beta, n)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = False      # deterministic algorithms: the same command gives the same rows
        torch.backends.cudnn.deterministic = True

    # ---- data, models, fingerprints
    ds = load_data(data)
    sel = parse_indices(indices, len(ds))
    norm_mean, norm_std = check_normalisation(mean, std)
    x0, _ = ds.get(sel[0])
    # channels-last (NHWC) by default for image inputs on every device: oneDNN's CPU convolutions run
    # 1.3-2x faster in it (bench/sampler.py), cuDNN's too; a model whose forward cannot take it
    # (e.g. a .view() over C, H, W) falls back to the contiguous format unless --channels-last was asked
    cl = (True if channels_last is None else bool(channels_last)) and x0.ndim == 3
    members = [load_model(m, w, norm_mean, norm_std, dev, channels_last=cl)
               for m, w in zip(models, pair_weights(models, weights))]
    core = load_model(core_model, core_weights, norm_mean, norm_std, dev, channels_last=cl) if core_model else None
    if core_weights and not core_model:
        raise ValueError("--core-weights needs --core-model")
    mem_fmt = torch.channels_last if cl else torch.contiguous_format

    def forward(mod, x):                                     # reads mem_fmt when called (after the probe below)
        with torch.inference_mode(), amp_context(dev, amp):
            return mod(x.contiguous(memory_format=mem_fmt))

    probe = torch.from_numpy(np.stack([x0, x0])).to(dev)     # a batch of two: a .view() that only fits one row fails here
    if cl and channels_last is None:
        try:
            for lm in members + ([core] if core else []):
                forward(lm.module, probe)
        except Exception as e:
            log(f"smoothcert sample: model {lm.spec} failed in channels-last format ({type(e).__name__}); "
                f"retrying in the contiguous format")
            cl, mem_fmt = False, torch.contiguous_format
            for lm in members + ([core] if core else []):
                lm.module.to(memory_format=mem_fmt)

    num_classes = None
    for lm in members + ([core] if core else []):
        try:
            out = forward(lm.module, probe)
        except Exception as e:
            raise ValueError(f"model {lm.spec}: the forward pass on input {sel[0]} of shape {tuple(x0.shape)} failed: "
                             f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
        if out.dim() != 2 or out.shape[0] != 2 or out.shape[1] < 2:
            raise ValueError(f"model {lm.spec}: expected logits of shape (batch, classes), got {tuple(out.shape)} "
                             f"for a batch of 2")
        if num_classes is None:
            num_classes = int(out.shape[1])
        elif int(out.shape[1]) != num_classes:
            raise ValueError(f"model {lm.spec} has {int(out.shape[1])} classes, model {members[0].spec} has {num_classes}")
    m, k = num_classes, len(members)

    def check_label(i):
        xi, yi = ds.get(i)
        if yi >= m:
            raise ValueError(f"data {data}: input {i} has label {yi}, but the model has {m} classes (0..{m - 1})")
        if xi.shape != x0.shape:
            raise ValueError(f"data {data}: input {i} has shape {tuple(xi.shape)}, input {sel[0]} has {tuple(x0.shape)}")
        return xi, yi

    dfp = data_fingerprint(SimpleNamespace(get=check_label), sel)   # also checks every label and shape
    mfps = [lm.fingerprint for lm in members]
    meta = {
        "source": "sample",
        "seed": seed,
        "model": models[0] if k == 1 else list(models),
        "weights": [lm.weights for lm in members] if k > 1 else members[0].weights,
        "model_fingerprint": mfps[0] if k == 1 else hashlib.sha256("\n".join(mfps).encode()).hexdigest(),
        "member_fingerprints": mfps if k > 1 else None,
        "core_model": core_model,
        "core_model_fingerprint": core.fingerprint if core else None,
        "data": str(data),
        "data_fingerprint": dfp,
        "indices": indices_spec(sel),
        "input_shape": list(x0.shape),
        "noise_scheme": _noise.SCHEME,
        "noise_space": "[0, 1] pixels, x + sigma * eps, unclipped; normalisation applied after the noise",
        "normalisation": {"mean": norm_mean, "std": norm_std} if norm_mean is not None else None,
        "amp": amp,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "rows": "softmax of the model" if k == 1 else "softmax of the mean of the members' log-softmax",
    }
    if adaptive is not None:
        meta["adaptive"] = adaptive
    create_kw = dict(n_inputs=len(sel), n0=n0, n=n, num_classes=m, sigma=sigma, dtype=dtype,
                     members=k if k > 1 else 0, core_predict=core is not None, metadata=meta)
    want = dict(meta, sigma=sigma, n0=n0, n=n, dtype=dtype, n_inputs=len(sel), num_classes=m,
                members=k if k > 1 else 0, core_predict=core is not None)
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
    st, created = open_or_create(target, storage_options=storage_options, **create_kw)
    try:
        if not created:
            check_compatible(st, want)
        res = _run(st, sh, sel, ds, members, core, forward, dev, R, m, k, dtype, sigma, seed, batch_size,
                   mem_fmt, amp, cl, progress, queue_size, log, check_label, adaptive=adaptive, n0=n0)
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


def _run(st, sh, sel, ds, members, core, forward, dev, R, m, k, dtype, sigma, seed, batch_size,
         mem_fmt, amp, cl, progress, queue_size, log, get_input, adaptive=None, n0=None) -> SampleResult:
    """The sampling loop over this shard's incomplete slots; returns what it did and records it as a run."""
    import torch
    from tqdm import tqdm

    N = len(sel)
    complete = st.complete_mask()        # a record cut short by a kill reads as incomplete
    mine = list(sh.slots(N))
    todo = [s for s in mine if not complete[s]]
    skipped = len(mine) - len(todo)
    run_id = f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}-{platform.node() or 'host'}-{os.getpid()}"
    record = {"started": _now(), "status": "running", "shard": str(sh), "shard_source": sh.source,
              "device": str(dev), "batch_size": batch_size, "amp": amp, "channels_last": cl,
              "torch_threads": torch.get_num_threads(), "host": platform.node(), "pid": os.getpid(),
              "inputs_todo": len(todo), "inputs_skipped": skipped, "noise_scheme": _noise.SCHEME,
              "noise_impl": "numba" if dev.type == "cpu" else "torch"}
    st.add_run(run_id, record)
    if dev.type == "cpu":
        _noise.warm_up()
        record["malloc_tuned"] = keep_freed_memory()     # freed activations stay in the heap between batches

    tty = sys.stderr.isatty()
    pbar = tqdm(total=len(todo) * R, unit="sample", unit_scale=True, desc=f"sampling (shard {sh})" if sh.n > 1 else "sampling",
                disable=not progress or not todo, mininterval=0.5 if tty else 30.0, file=sys.stderr, dynamic_ncols=True)
    done = [0]

    def on_written(r=R):
        done[0] += 1
        pbar.update(r)
        pbar.set_postfix_str(f"inputs {done[0]}/{len(todo)}", refresh=False)

    # CPU, one model: the noisy batches in one reused buffer and softmax + argmax in one numba pass into
    # float32 rows, instead of several small torch ops per batch; the writer's write_input rounds the rows to
    # the store's dtype (store.float16: ~4 ms per input of 100,100 x 10, off the compute thread). Each Python
    # step between two forward passes is slow (the pass evicts the interpreter from the caches): the loop
    # below takes as few as it can.
    cpu_fast = dev.type == "cpu" and k == 1
    if cpu_fast:
        from . import kernels as _kernels

        _kernels.warm_up()
        softmax_argmax_at = _kernels.softmax_argmax_at
        module, nbatches = members[0].module, None
    free, work = queue.Queue(), queue.Queue(maxsize=max(1, queue_size))
    for _ in range(max(1, queue_size) + 1):
        free.put(_Buffers(R, m, k, "float32" if cpu_fast else dtype, dev, core is not None))
    writer = _Writer(st, work, free, R, on_written)
    writer.start()
    batches = row_batches(R, batch_size)
    stop_at = {}
    if adaptive is not None:  # cut batches at the stage boundaries: stage j ends after row n0 + n_j
        from ..stats.adaptive import online_decision
        from ..stats.counts import top_k

        bounds = [n0 + s for s in adaptive["stages"]]
        cuts = sorted(set([0, R] + bounds))
        batches = [(a0 + a, a0 + b) for a0, b0 in zip(cuts, cuts[1:]) for a, b in row_batches(b0 - a0, batch_size)]
        stop_at = {b: j for j, b in enumerate(bounds)}
    t0 = time.perf_counter()
    status = "failed"
    try:
        for slot in todo:
            idx = sel[slot]
            x, y = get_input(idx)
            xt = torch.from_numpy(x)
            if dev.type == "cuda":
                xt = xt.pin_memory().to(dev, non_blocking=True)
            else:
                xt = xt.to(dev)
            buf = _get(free, writer)
            r_drawn = R
            k_seen, cA = [], None
            with torch.inference_mode():
                if core is not None:
                    buf.core.copy_(forward(core.module, xt[None]).float().argmax(1))
                if cpu_fast:
                    if nbatches is None:
                        nbatches = _noise.NoisyBatches(x.shape, batch_size)
                        cl_copy = mem_fmt is torch.channels_last and x.shape[0] > 1  # one channel: NCHW is NHWC
                    nbatches.set_input(xt, sigma, seed, idx)
                    rows_np, arg_np = buf.rows.numpy(), buf.arg.numpy()
                # the fast path's autocast spans the batches (no per-batch context); forward() enters its own
                with amp_context(dev, amp) if cpu_fast else contextlib.nullcontext():
                    for a, b in batches:
                        if cpu_fast:
                            noisy = nbatches.rows(a, b)
                            logits = module(noisy.contiguous(memory_format=mem_fmt) if cl_copy else noisy)
                            softmax_argmax_at(logits.float().contiguous().numpy(), rows_np, arg_np, a)
                        else:
                            noisy = _noise.noisy_copies(xt, sigma, seed, idx, a, b)
                            if k == 1:
                                probs = torch.softmax(forward(members[0].module, noisy).float(), dim=1)
                            else:
                                lps = torch.stack([torch.log_softmax(forward(mm.module, noisy).float(), dim=1)
                                                   for mm in members], 1)
                                buf.mem[a:b].copy_(lps)
                                probs = torch.softmax(lps.mean(1), dim=1)
                            buf.arg[a:b].copy_(probs.argmax(1))
                            buf.rows[a:b].copy_(probs)
                        if stop_at and b in stop_at:  # adaptive: decide on S0's top class and the first n_j rows of S
                            if cA is None:
                                c0 = torch.bincount(buf.arg[:n0].long(), minlength=m).cpu().numpy()
                                cA = int(top_k(c0[None], 1)[0][0, 0])
                            k_seen.append(int((buf.arg[n0:b] == cA).sum()))
                            if online_decision(k_seen, adaptive["stages"], sigma, adaptive["alpha"], adaptive["beta"],
                                               adaptive["radius"]) is not None:
                                r_drawn = b
                                break
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
