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
    naming the model) if a forward pass fails, the logits are not (batch,
    classes >= 2), or the members disagree on the number of classes.
    """
    from .models import load_model, pair_weights

    cl = (True if cfg.channels_last is None else cfg.channels_last) and x0.ndim == 3
    members = [load_model(m, w, cfg.mean, cfg.std, dev, channels_last=cl)
               for m, w in zip(cfg.models, pair_weights(cfg.models, cfg.weights))]
    core = (load_model(cfg.core_model, cfg.core_weights, cfg.mean, cfg.std, dev, channels_last=cl)
            if cfg.core_model else None)
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


class Buffers:
    """One input's rows on the device, and (on an accelerator) their pinned host copy."""

    def __init__(self, R, m, k, row_dtype, device, with_core):
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
            getattr(torch, self.device.type).synchronize()


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
    """What both loops share: the config's batches and stage ends, the models, the core model's class."""

    row_dtype: str

    def __init__(self, cfg: SampleConfig, models: Models):
        self.cfg, self.models = cfg, models
        self.R = cfg.rows_per_input
        self.batches = cfg.batches()
        self.stop_at = cfg.stage_ends()
        self.m, self.k = models.num_classes, len(models.members)

    def _rule(self):
        return OnlineRule(self.cfg, self.m) if self.stop_at else None

    def _core(self, buf, xt) -> None:
        core = self.models.core
        if core is not None:
            buf.core.copy_(self.models.forward(core.module, xt[None]).float().argmax(1))


class CpuLoop(_Loop):
    """One model on CPU: numba noise into one reused buffer, the forward pass, numba softmax + argmax; float32 rows.

    The writer rounds the rows to the store's dtype (``SampleStore.write_input``), off the compute thread.
    """

    row_dtype = "float32"

    def __init__(self, cfg: SampleConfig, models: Models):
        super().__init__(cfg, models)
        from . import kernels as _kernels

        _kernels.warm_up()
        self._softmax_argmax_at = _kernels.softmax_argmax_at
        self._module = models.members[0].module
        self._nbatches = self._cl_copy = None

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
            module, softmax_argmax_at, stop_at = self._module, self._softmax_argmax_at, self.stop_at
            nbatches.set_input(xt, cfg.sigma, cfg.seed, idx)
            rows_np, arg_np = buf.rows.numpy(), buf.arg.numpy()
            # the autocast spans the batches (no per-batch context)
            with amp_context(models.device, cfg.amp):
                for a, b in self.batches:
                    noisy = nbatches.rows(a, b)
                    logits = module(noisy.contiguous(memory_format=mem_fmt) if cl_copy else noisy)
                    softmax_argmax_at(logits.float().contiguous().numpy(), rows_np, arg_np, a)
                    if stop_at and b in stop_at and rule.decides(buf.arg, b):
                        r_drawn = b
                        break
        return r_drawn


class DeviceLoop(_Loop):
    """An accelerator, or an ensemble: noise, forward passes, softmax and argmax on the device, rows in the store's dtype."""

    def __init__(self, cfg: SampleConfig, models: Models):
        super().__init__(cfg, models)
        self.row_dtype = cfg.dtype

    def fill(self, buf, x, idx: int) -> int:
        """Rows of input ``idx`` (clean pixels ``x``, a numpy array) into ``buf``; returns how many were drawn."""
        cfg, models = self.cfg, self.models
        dev, forward, members, k = models.device, models.forward, models.members, self.k
        sigma, seed, stop_at = cfg.sigma, cfg.seed, self.stop_at
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
                    buf.mem[a:b].copy_(lps)
                    probs = torch.softmax(lps.mean(1), dim=1)
                buf.arg[a:b].copy_(probs.argmax(1))
                buf.rows[a:b].copy_(probs)
                if stop_at and b in stop_at and rule.decides(buf.arg, b):
                    r_drawn = b
                    break
        return r_drawn


def make_loop(cfg: SampleConfig, models: Models):
    """The loop for ``cfg`` and ``models``: ``CpuLoop`` for one model on CPU, else ``DeviceLoop``."""
    if models.device.type == "cpu" and len(models.members) == 1:
        return CpuLoop(cfg, models)
    return DeviceLoop(cfg, models)
