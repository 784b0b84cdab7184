"""The batch loops: one input's n0 + n noisy copies through the model(s), into a per-input row buffer.

``Models`` holds the loaded network(s) on their device and runs a forward
pass; ``make_loop`` picks the loop for a configuration:

* ``CpuLoop`` (one model on CPU): the noisy batches in one reused buffer
  (``noise.NoisyBatches``) and softmax + argmax in one numba pass
  (``kernels.softmax_argmax_at``) into float32 rows, instead of several small
  torch ops per batch. Each Python step between two forward passes is slow
  (the pass evicts the interpreter from the caches): its batch loop takes as
  few as it can, and everything that depends only on the run or the input is
  set up outside it.
* ``DeviceLoop`` (an accelerator, or an ensemble on any device): noise,
  forward pass, softmax and the argmax of the full-precision softmax all stay
  on the device; an ensemble stores each member's log-softmax and rows
  softmax(mean of the members' log-softmax).

With ``--topk K`` (``SampleConfig.topk``) both write compact rows instead
(``CompactBuffers``: per row the top K of the softmax rounded to the store's
dtype, their classes, the entropy, the argmax; the n0 selection rows whole),
exactly what ``store compact --topk K`` keeps of the full rows: the CPU loop
with one numba kernel per batch (``kernels.softmax_topk_at``), the device
loop on the device (``DeviceTopK``), so that full estimation rows are never
stored nor copied to the host.

Both cut an input short under the online adaptive rule (``OnlineRule``):
after each stage end of ``SampleConfig.stage_ends`` the rule decides on
S0's top class and the rows of S drawn so far, and the loop stops drawing.

Guarantee: ``fill(buf, x, idx)`` writes rows ``0:r`` of ``buf`` for input
``idx`` and returns ``r``; the rows depend only on (the model, the device,
x, the noise of (seed, idx, row), the config's batches), never on the other
inputs, so a subset, a shard or a resumed run computes exactly the same
tensors. Imports torch (only loaded when sampling).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from . import noise as _noise
from .config import AMP_DTYPES, SampleConfig


def amp_context(dev, amp: str | None):
    """The autocast context of ``--amp`` on device ``dev`` (a no-op context without it)."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=getattr(torch, AMP_DTYPES[amp]))


class Models:
    """The member network(s) and the optional core model, loaded on one device, and how to run them.

    ``mem_fmt`` (the memory format inputs are given in) may be switched to
    the contiguous format after loading, when a model cannot take
    channels-last; ``forward`` reads it at each call.
    """

    def __init__(self, members, core, device, amp, channels_last: bool):
        self.members = list(members)
        self.core = core
        self.device = device
        self.amp = amp
        self.channels_last = bool(channels_last)
        self.mem_fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.num_classes = None

    @property
    def all(self) -> list:
        """The members, then the core model if there is one."""
        return self.members + ([self.core] if self.core else [])

    def use_contiguous(self) -> None:
        """Give every model (and its inputs) the contiguous memory format from now on."""
        self.channels_last, self.mem_fmt = False, torch.contiguous_format
        for lm in self.all:
            lm.module.to(memory_format=self.mem_fmt)

    def forward(self, mod, x):
        """``mod``'s logits on batch ``x`` (inference mode, under ``--amp``, in the models' memory format)."""
        with torch.inference_mode(), amp_context(self.device, self.amp):
            return mod(x.contiguous(memory_format=self.mem_fmt))


def load_models(cfg: SampleConfig, dev, x0, first_index: int, log) -> Models:
    """``cfg``'s member model(s) and core model on ``dev``, checked on a batch of two copies of input ``x0``.

    Channels-last (NHWC) by default for image inputs on every device:
    oneDNN's CPU convolutions run 1.3-2x faster in it (bench/sampler.py),
    cuDNN's too; a model whose forward cannot take it (e.g. a ``.view()``
    over C, H, W) falls back to the contiguous format, with a note through
    ``log``, unless ``channels_last`` was asked for. ValueError (one line,
    naming the model) if a model cannot be loaded, ``--arch`` fits no model
    file, a forward pass fails, the logits are not (batch,
    classes >= 2), or the members disagree on the number of classes.
    """
    from .models import load_model, pair_weights

    cl = (True if cfg.channels_last is None else cfg.channels_last) and x0.ndim == 3
    members = [load_model(m, w, cfg.mean, cfg.std, dev, channels_last=cl, arch=cfg.arch)
               for m, w in zip(cfg.models, pair_weights(cfg.models, cfg.weights))]
    core = (load_model(cfg.core_model, cfg.core_weights, cfg.mean, cfg.std, dev, channels_last=cl, arch=cfg.arch)
            if cfg.core_model is not None else None)
    if cfg.arch is not None and not any(lm.checkpoint for lm in members + [core] if lm is not None):
        raise ValueError(f"--arch {cfg.arch} applies only to a model file holding a checkpoint or a bare state_dict; "
                         f"{members[0].spec} is not one")
    models = Models(members, core, dev, cfg.amp, cl)
    probe = torch.from_numpy(np.stack([x0, x0])).to(dev)     # a batch of two: a .view() that only fits one row fails here
    if cl and cfg.channels_last is None:
        try:
            for lm in models.all:
                models.forward(lm.module, probe)
        except Exception as e:
            log(f"smoothcert sample: model {lm.spec} failed in channels-last format ({type(e).__name__}); "
                f"retrying in the contiguous format")
            models.use_contiguous()
    num_classes = None
    for lm in models.all:
        try:
            out = models.forward(lm.module, probe)
        except Exception as e:
            raise ValueError(f"model {lm.spec}: the forward pass on input {first_index} of shape {tuple(x0.shape)} "
                             f"failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
        if out.dim() != 2 or out.shape[0] != 2 or out.shape[1] < 2:
            raise ValueError(f"model {lm.spec}: expected logits of shape (batch, classes), got {tuple(out.shape)} "
                             f"for a batch of 2")
        if num_classes is None:
            num_classes = int(out.shape[1])
        elif int(out.shape[1]) != num_classes:
            raise ValueError(f"model {lm.spec} has {int(out.shape[1])} classes, model {members[0].spec} has {num_classes}")
    models.num_classes = num_classes
    return models


class _Staged:
    """Device tensors and their host copies (the same tensors on CPU; pinned on CUDA), copied after each input."""

    def _alloc(self, shape, dtype, device):
        """A device tensor and its host copy."""
        d = torch.empty(shape, dtype=dtype, device=device)
        if device.type == "cpu":
            return d, d
        return d, torch.empty(shape, dtype=dtype, pin_memory=device.type == "cuda")

    def _pairs(self):
        raise NotImplementedError

    def stage(self):
        """Start copying the device parts to the host (asynchronous on CUDA)."""
        if self.on_host:
            return
        nb = self.device.type == "cuda"
        for d, h in self._pairs():
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
            getattr(torch, self.device.type).synchronize()

    @staticmethod
    def _not_finite(idx, bad):
        return ValueError(f"the model's output on input {idx} (row {bad}) is not finite; nothing written for it")


class Buffers(_Staged):
    """One input's rows on the device, and (on an accelerator) their pinned host copy."""

    def __init__(self, R, m, k, row_dtype, device, with_core):
        self.device = device
        tdt = getattr(torch, row_dtype)
        self.on_host = device.type == "cpu"
        self.rows, self.h_rows = self._alloc((R, m), tdt, device)
        self.arg, self.h_arg = self._alloc((R,), torch.int32, device)
        self.mem, self.h_mem = self._alloc((R, k, m), torch.float32, device) if k > 1 else (None, None)
        self.core, self.h_core = self._alloc((1,), torch.int64, device) if with_core else (None, None)
        if with_core:
            self.core.fill_(-1)
        self.event = None

    def _pairs(self):
        return ((self.rows, self.h_rows), (self.arg, self.h_arg), (self.mem, self.h_mem), (self.core, self.h_core))

    def payload(self, r: int, idx: int) -> dict:
        """The ``write_input`` arguments of the input's ``r`` rows (host copy); ValueError naming a non-finite row."""
        rows = self.h_rows.numpy()[:r]
        if not np.isfinite(rows).all():
            raise self._not_finite(idx, int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0]))
        return dict(rows=rows, argmax=self.h_arg.numpy()[:r],
                    member_logprobs=self.h_mem.numpy()[:r] if self.h_mem is not None else None,
                    core_predict=int(self.h_core[0]) if self.h_core is not None else None)


class CompactBuffers(_Staged):
    """One input's compact rows (``sample --topk``): what crosses from the device to the host.

    Per row: ``top_p`` (K values; float32 on the CPU loop, the store's dtype
    on an accelerator), ``top_c`` (K classes, int16 holding the uint16 ids),
    ``ent`` (float64), ``arg`` (int32); ``rows0``: the n0 selection rows
    whole (float32 on the CPU loop, the store's dtype on an accelerator).
    """

    def __init__(self, R, n0, m, K, row_dtype, device, with_core):
        self.device = device
        tdt = getattr(torch, row_dtype)
        self.on_host = device.type == "cpu"
        self.top_p, self.h_top_p = self._alloc((R, K), tdt, device)
        self.top_c, self.h_top_c = self._alloc((R, K), torch.int16, device)
        self.ent, self.h_ent = self._alloc((R,), torch.float64, device)
        self.arg, self.h_arg = self._alloc((R,), torch.int32, device)
        self.rows0, self.h_rows0 = self._alloc((n0, m), tdt, device)
        self.core, self.h_core = self._alloc((1,), torch.int64, device) if with_core else (None, None)
        if with_core:
            self.core.fill_(-1)
        self.event = None

    def _pairs(self):
        return ((self.top_p, self.h_top_p), (self.top_c, self.h_top_c), (self.ent, self.h_ent),
                (self.arg, self.h_arg), (self.rows0, self.h_rows0), (self.core, self.h_core))

    def payload(self, r: int, idx: int) -> dict:
        """The compact ``write_input`` arguments of the input's ``r`` rows; ValueError naming a non-finite row
        (the loops give a row whose softmax is not finite a NaN entropy)."""
        ent = self.h_ent.numpy()[:r]
        if not np.isfinite(ent).all():
            raise self._not_finite(idx, int(np.flatnonzero(~np.isfinite(ent))[0]))
        return dict(topk_p=self.h_top_p.numpy()[:r], topk_c=self.h_top_c.numpy()[:r].view(np.uint16), entropy=ent,
                    rows0=self.h_rows0.numpy(), argmax=self.h_arg.numpy()[:r],
                    core_predict=int(self.h_core[0]) if self.h_core is not None else None)


class OnlineRule:
    """CERTIFYADP decided online for one input (docs/methods.md section 6), at the stage ends of its rows.

    Guarantee: ``decides(arg, b)``, called at each stage end ``b`` in order,
    returns True exactly when ``certify --method adaptive`` (same radius,
    stages, alpha, beta) on rows ``0:b`` decides at that stage: the top class
    of the first n0 argmaxes is cA, and the counts of cA in rows n0:b of
    each stage seen so far go to ``stats.adaptive.online_decision``.
    """

    def __init__(self, cfg: SampleConfig, m: int):
        from ..stats.adaptive import online_decision
        from ..stats.counts import top_k

        self._decision, self._top_k = online_decision, top_k
        self.n0, self.m, self.sigma, self.plan = cfg.n0, m, cfg.sigma, cfg.adaptive_plan
        self.k_seen, self.cA = [], None

    def decides(self, arg, b: int) -> bool:
        """After rows ``0:b`` (argmaxes ``arg``): True to stop drawing this input."""
        if self.cA is None:
            c0 = torch.bincount(arg[:self.n0].long(), minlength=self.m).cpu().numpy()
            self.cA = int(self._top_k(c0[None], 1)[0][0, 0])
        self.k_seen.append(int((arg[self.n0:b] == self.cA).sum()))
        p = self.plan
        return self._decision(self.k_seen, p["stages"], self.sigma, p["alpha"], p["beta"], p["radius"]) is not None


class _Loop:
    """What both loops share: the config's batches and stage ends, the models, the core model's class, the buffers."""

    row_dtype: str

    def __init__(self, cfg: SampleConfig, models: Models):
        self.cfg, self.models = cfg, models
        self.R = cfg.rows_per_input
        self.batches = cfg.batches()
        self.stop_at = cfg.stage_ends()
        self.m, self.k = models.num_classes, len(models.members)
        self.topk = cfg.topk

    def _rule(self):
        return OnlineRule(self.cfg, self.m) if self.stop_at else None

    def _core(self, buf, xt) -> None:
        core = self.models.core
        if core is not None:
            buf.core.copy_(self.models.forward(core.module, xt[None]).float().argmax(1))

    def make_buffers(self):
        """One input's buffers: full rows (``Buffers``), or compact rows with ``--topk`` (``CompactBuffers``)."""
        dev, with_core = self.models.device, self.models.core is not None
        if self.topk:
            return CompactBuffers(self.R, self.cfg.n0, self.m, self.topk, self.row_dtype, dev, with_core)
        return Buffers(self.R, self.m, self.k, self.row_dtype, dev, with_core)


class CpuLoop(_Loop):
    """One model on CPU: numba noise into one reused buffer, the forward pass, one numba kernel per batch.

    The kernel is ``softmax_argmax_at`` (float32 rows and their argmax; the
    writer rounds the rows to the store's dtype, ``SampleStore.write_input``,
    off the compute thread) or, with ``--topk``, ``softmax_topk_at`` (the
    compact rows of the softmax rounded to the store's dtype, and the
    selection rows whole): either way one call per batch.
    """

    row_dtype = "float32"

    def __init__(self, cfg: SampleConfig, models: Models):
        super().__init__(cfg, models)
        from . import kernels as _kernels

        if self.topk:
            _kernels.warm_up_topk()
            self._kernel = _kernels.softmax_topk_at
            values, terms = _kernels.f16_tables()
            self._tables = (values, terms) if cfg.dtype == "float16" else (values[:0], terms[:0])
        else:
            _kernels.warm_up()
            self._kernel = _kernels.softmax_argmax_at
        self._module = models.members[0].module
        self._nbatches = self._cl_copy = None

    def _outputs(self, buf) -> tuple:
        """The kernel's arguments between the logits and the row offset: numpy views of ``buf``."""
        if self.topk:
            return (buf.top_p.numpy(), buf.top_c.numpy().view(np.uint16), buf.ent.numpy(), buf.arg.numpy(),
                    buf.rows0.numpy()) + self._tables
        return buf.rows.numpy(), buf.arg.numpy()

    def fill(self, buf, x, idx: int) -> int:
        """Rows of input ``idx`` (clean pixels ``x``, a numpy array) into ``buf``; returns how many were drawn."""
        cfg, models = self.cfg, self.models
        xt = torch.from_numpy(x).to(models.device)
        r_drawn = self.R
        rule = self._rule()
        with torch.inference_mode():
            self._core(buf, xt)
            if self._nbatches is None:
                self._nbatches = _noise.NoisyBatches(x.shape, cfg.batch_size)
                self._cl_copy = models.mem_fmt is torch.channels_last and x.shape[0] > 1  # one channel: NCHW is NHWC
            nbatches, cl_copy, mem_fmt = self._nbatches, self._cl_copy, models.mem_fmt
            module, kernel, stop_at = self._module, self._kernel, self.stop_at
            nbatches.set_input(xt, cfg.sigma, cfg.seed, idx)
            outs = self._outputs(buf)
            # the autocast spans the batches (no per-batch context)
            with amp_context(models.device, cfg.amp):
                for a, b in self.batches:
                    noisy = nbatches.rows(a, b)
                    logits = module(noisy.contiguous(memory_format=mem_fmt) if cl_copy else noisy)
                    kernel(logits.float().contiguous().numpy(), *outs, a)
                    if stop_at and b in stop_at and rule.decides(buf.arg, b):
                        r_drawn = b
                        break
        return r_drawn


class DeviceTopK:
    """``sample --topk`` on a torch device: one batch's softmax rows -> its compact rows, on the device.

    Per row: the argmax of the float32 softmax, the row rounded to float16
    (torch's rounding: nearest, ties to even, as numpy's), its top K by an
    integer key (the value's bits, then 65535 - class: ties to the lower
    class), and its entropy: each value's ``-p ln p`` from a table of the
    65,536 float16 values computed on the host with the host kernel's
    arithmetic (``kernels.f16_tables``), summed in class order in float64
    by ``cumsum`` along the outer axis of the transposed terms (torch's
    outer-dimension scan adds one element after the other per column, as the
    host kernel adds them; a single row is padded to two columns, since torch
    scans a lone column in parallel). Only the K values
    (float16), K classes (int16), the argmax (int32), the entropy (float64)
    and the n0 selection rows cross to the host. The first batch of a run is
    checked against the host kernel (``store.topk.compact_rows``) and a
    difference is refused. float32 rows are compacted on the host (CPU
    devices only; ``sample`` refuses them on accelerators).
    """

    def __init__(self, K: int, n0: int, m: int, dtype: str, device):
        self.K, self.n0, self.dtype, self.device = int(K), int(n0), dtype, device
        self.checked = False
        if dtype == "float16":
            from .kernels import f16_tables

            _, terms = f16_tables()
            try:
                self.neg_terms = torch.from_numpy(-terms).to(device)
            except (TypeError, RuntimeError) as e:
                raise ValueError(f"--topk on {device}: the device cannot hold the float64 entropy terms "
                                 f"({type(e).__name__}); sample with --device cpu or cuda") from None
            self.rev_c = 65535 - torch.arange(m, dtype=torch.int64, device=device)

    def __call__(self, probs, buf, a: int, b: int, idx: int) -> None:
        buf.arg[a:b].copy_(probs.argmax(1))
        if a < self.n0:
            e = min(b, self.n0)
            buf.rows0[a:e].copy_(probs[:e - a])
        if self.dtype != "float16":
            from ..store.topk import compact_rows

            p, c, h = compact_rows(probs.cpu().numpy(), self.K)
            bad = ~np.isfinite(probs.cpu().numpy()).all(axis=1)
            h[bad] = np.nan
            buf.top_p[a:b].copy_(torch.from_numpy(p))
            buf.top_c[a:b].copy_(torch.from_numpy(c.view(np.int16)))
            buf.ent[a:b].copy_(torch.from_numpy(h))
            return
        q = probs.to(torch.float16)
        bits = q.view(torch.int16).to(torch.int64) & 0xFFFF
        top = torch.topk((bits << 16) | self.rev_c, self.K, dim=1).values
        buf.top_c[a:b].copy_(65535 - (top & 0xFFFF))
        buf.top_p[a:b].copy_((top >> 16).to(torch.int16).view(torch.float16))
        terms = self.neg_terms[bits].t().contiguous()                      # (m, B): classes along the outer axis
        if terms.shape[1] == 1:       # one row: torch would scan it in parallel (cub), not one term after the other
            terms = torch.cat([terms, torch.zeros_like(terms)], 1)
        buf.ent[a:b].copy_(terms.cumsum(0)[-1, :b - a])
        if not self.checked:
            self._check(q, buf, a, b, idx)

    def _check(self, q, buf, a, b, idx) -> None:
        """Refuse a device whose compact rows of this batch differ from the host kernel's (ValueError, one line)."""
        from ..store.topk import compact_rows

        qh = q.cpu().numpy()
        ok = np.isfinite(qh).all(axis=1)
        p, c, h = compact_rows(np.where(ok[:, None], qh, 0), self.K)
        got_p = buf.top_p[a:b].cpu().numpy()[ok]
        got_c = buf.top_c[a:b].cpu().numpy().view(np.uint16)[ok]
        got_h = buf.ent[a:b].cpu().numpy()[ok]
        if not (got_p.tobytes() == p[ok].tobytes() and np.array_equal(got_c, c[ok])
                and got_h.tobytes() == h[ok].tobytes()):
            raise ValueError(f"--topk on {self.device}: the device's top-{self.K} values, classes or entropies of "
                             f"input {idx} differ from the host kernel's (torch {torch.__version__}); sample full "
                             f"rows and run 'smoothcert store compact' instead")
        self.checked = True


class DeviceLoop(_Loop):
    """An accelerator, or an ensemble: noise, forward passes, softmax and argmax on the device, rows in the store's dtype.

    With ``--topk`` the compact rows are computed on the device too (``DeviceTopK``).
    """

    def __init__(self, cfg: SampleConfig, models: Models):
        super().__init__(cfg, models)
        self.row_dtype = cfg.dtype
        self._topk = DeviceTopK(cfg.topk, cfg.n0, self.m, cfg.dtype, models.device) if cfg.topk else None

    def fill(self, buf, x, idx: int) -> int:
        """Rows of input ``idx`` (clean pixels ``x``, a numpy array) into ``buf``; returns how many were drawn."""
        cfg, models = self.cfg, self.models
        dev, forward, members, k = models.device, models.forward, models.members, self.k
        sigma, seed, stop_at, compact = cfg.sigma, cfg.seed, self.stop_at, self._topk
        xt = torch.from_numpy(x)
        if dev.type == "cuda":
            xt = xt.pin_memory().to(dev, non_blocking=True)
        else:
            xt = xt.to(dev)
        r_drawn = self.R
        rule = self._rule()
        with torch.inference_mode():
            self._core(buf, xt)
            for a, b in self.batches:
                noisy = _noise.noisy_copies(xt, sigma, seed, idx, a, b)
                if k == 1:
                    probs = torch.softmax(forward(members[0].module, noisy).float(), dim=1)
                else:
                    lps = torch.stack([torch.log_softmax(forward(mm.module, noisy).float(), dim=1)
                                       for mm in members], 1)
                    if compact is None:
                        buf.mem[a:b].copy_(lps)
                    probs = torch.softmax(lps.mean(1), dim=1)
                if compact is None:
                    buf.arg[a:b].copy_(probs.argmax(1))
                    buf.rows[a:b].copy_(probs)
                else:
                    compact(probs, buf, a, b, idx)
                if stop_at and b in stop_at and rule.decides(buf.arg, b):
                    r_drawn = b
                    break
        return r_drawn


def make_loop(cfg: SampleConfig, models: Models):
    """The loop for ``cfg`` and ``models``: ``CpuLoop`` for one model on CPU, else ``DeviceLoop``."""
    if models.device.type == "cpu" and len(models.members) == 1:
        return CpuLoop(cfg, models)
    return DeviceLoop(cfg, models)
