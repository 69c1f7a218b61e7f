"""``--precision fp32|bf16|fp16`` and ``--compile``: how the networks of a bundle are evaluated.

Only network calls change. Each network of the bundle is wrapped in :class:`NetCall`, which runs it under
``torch.autocast`` (bf16/fp16) and hands back float32 outputs, so the particle state, the sampler's arithmetic and every
noise draw stay float32 (docs/interfaces.md#distribution). Analytic fields (``toy:`` targets, oracles) are not networks
and are left alone.

``--compile`` wraps the network in ``torch.compile(dynamic=False)``. The compiled graph is specialised to one batch
shape: a smaller batch (the last one of a run) is padded to the fixed batch size by repeating its last row and the
output is cut back, so the graph is compiled once per run and never again. The first call pays the compilation
(seconds to minutes depending on the network and the backend, see benchmarks/README.md); later calls are faster.

``fp16`` autocast is offered on CUDA only: on CPU, float16 matrix kernels are slow or missing and float16's 5-bit
exponent gains nothing there over bf16.

Convolutional networks run in ``channels_last`` memory format on every device (``$GPM_CHANNELS_LAST=0`` turns it off):
oneDNN's and cuDNN's native layout, no reorders between layers. On 2 CPU cores the shipped MNIST UNet's forward pass
at the 16-row CPU chunk is 1.02x to 1.14x faster, a fp32 training step 1.16x to 1.23x (``python benchmarks/layout.py``;
``benchmarks/mnist_default.py --compare-layout`` times whole commands both ways: ``edm`` 1.17x). Only float rounding
changes (about 1e-6 relative).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch import nn

from gpmcli.errors import UsageError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of ``--precision``; refuses what the device cannot do."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose fp32, bf16 or fp16")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError(f"--precision fp16 needs a CUDA device (this run is on {device.type}); use --precision bf16, "
                         "which autocast supports on CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("--precision bf16: this GPU has no bfloat16 support; use --precision fp16")
    return PRECISIONS[precision]


def compile_backend():
    """The ``torch.compile`` backend: ``$GPM_COMPILE_BACKEND`` or inductor (``eager``/``aot_eager`` skip code
    generation: useful where no C++ compiler is installed)."""
    return os.environ.get("GPM_COMPILE_BACKEND", "inductor")


def _pad_rows(t: Any, b: int, to: int) -> Any:
    if isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape[0] == b and to > b:
        return torch.cat([t, t[-1:].expand(to - b, *t.shape[1:])], 0)
    return t


def _finish(o: Any, b: int | None) -> Any:
    if isinstance(o, torch.Tensor):
        if o.dtype in (torch.float16, torch.bfloat16):
            o = o.float()
        if b is not None and o.ndim > 0:
            o = o[:b]
        return o.contiguous() if o.ndim == 4 else o
    if isinstance(o, (tuple, list)):
        return type(o)(_finish(v, b) for v in o)
    return o


def net_chunk(device: torch.device | str) -> int | None:
    """Rows per network evaluation during sampling on this device (``$GPM_NET_CHUNK`` overrides; 0 turns chunking
    off): every call is cut into chunks of exactly this many rows (the last one padded), so a sample's network outputs
    do not depend on ``--batch-size`` (CPU kernels pick their blocking, hence their float rounding, by batch shape)."""
    env = os.environ.get("GPM_NET_CHUNK", "").strip()
    if env:
        if not env.isdigit():
            raise UsageError(f"GPM_NET_CHUNK={env!r}: expected a non-negative integer (0: no chunks)")
        return int(env) or None
    return {"cpu": 16}.get(torch.device(device).type, 128)


def _slice_rows(t: Any, n: int, s: int, e: int) -> Any:
    return t[s:e] if isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape[0] == n else t


def _cat_rows(outs: list[Any]) -> Any:
    o = outs[0]
    if isinstance(o, torch.Tensor):
        return torch.cat(outs, 0) if o.ndim > 0 else o
    if isinstance(o, (tuple, list)):
        return type(o)(_cat_rows([x[i] for x in outs]) for i in range(len(o)))
    return o


class NetCall(nn.Module):
    """A network evaluated under autocast (``dtype`` None: as is), optionally compiled for a fixed batch size, and
    optionally always on ``chunk`` rows at a time (fixed-shape evaluation: results independent of the batch)."""

    def __init__(self, net: nn.Module, *, dtype: torch.dtype | None, device_type: str, compile: bool = False,
                 batch: int | None = None, channels_last: bool = False, chunk: int | None = None):
        super().__init__()
        self.net = net
        self.chunk = chunk
        self.dtype, self.device_type = dtype, device_type
        self.channels_last = channels_last
        if channels_last:
            net.to(memory_format=torch.channels_last)
        self.batch = batch if compile else None
        self.compiled = compile
        self._fn = torch.compile(net, dynamic=False, backend=compile_backend()) if compile else net

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        x = args[0] if args else None
        if self.chunk and isinstance(x, torch.Tensor) and x.ndim > 0 and x.shape[0] != self.chunk:
            n, k = x.shape[0], self.chunk
            outs = []
            for s in range(0, n, k):
                e = min(n, s + k)
                a = tuple(_pad_rows(_slice_rows(t, n, s, e), e - s, k) for t in args)
                kw = {name: _pad_rows(_slice_rows(v, n, s, e), e - s, k) for name, v in kwargs.items()}
                outs.append(_finish(self._call(a, kw), e - s) if e - s < k else self._call(a, kw))
            return _cat_rows(outs)
        return self._call(args, kwargs)

    def _call(self, args: tuple, kwargs: dict) -> Any:
        b = None
        if self.batch is not None and args and isinstance(args[0], torch.Tensor) and args[0].ndim > 0:
            n = args[0].shape[0]
            if n < self.batch:
                args = tuple(_pad_rows(a, n, self.batch) for a in args)
                kwargs = {k: _pad_rows(v, n, self.batch) for k, v in kwargs.items()}
                b = n
            elif n > self.batch:
                raise RuntimeError(f"compiled network called with {n} rows, more than its fixed batch {self.batch}")
        if self.compiled:  # one memory layout for every call (an expanded sigma has stride 0): no stride guard fails
            args = tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)
            kwargs = {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        if self.channels_last:
            args = tuple(a.contiguous(memory_format=torch.channels_last)
                         if isinstance(a, torch.Tensor) and a.ndim == 4 else a for a in args)
        if self.dtype is None:
            out = self._fn(*args, **kwargs)
        else:
            with torch.autocast(self.device_type, dtype=self.dtype):
                out = self._fn(*args, **kwargs)
        return _finish(out, b)


def _is_network(m: Any) -> bool:
    from gpmcli.fields.base import Denoiser
    from gpmcli.fields.discriminator import DiscriminatorField

    if not isinstance(m, nn.Module) or isinstance(m, (Denoiser, DiscriminatorField)):
        return False
    return any(True for _ in m.parameters())


def _has_conv(m: nn.Module) -> bool:
    return any(isinstance(x, (nn.Conv2d, nn.ConvTranspose2d)) for x in m.modules())


def channels_last_enabled() -> bool:
    """``$GPM_CHANNELS_LAST`` (default 1): 0 keeps conv networks in the contiguous (NCHW) layout."""
    env = os.environ.get("GPM_CHANNELS_LAST", "").strip()
    if env not in ("", "0", "1"):
        raise UsageError(f"GPM_CHANNELS_LAST={env!r}: expected 0 or 1")
    return env != "0"


def use_channels_last(net: nn.Module) -> bool:
    """Whether ``net`` is evaluated in ``channels_last`` (a conv network, unless ``$GPM_CHANNELS_LAST=0``)."""
    return channels_last_enabled() and _has_conv(net)


def wrap_network(net: nn.Module, *, precision: str = "fp32", compile: bool = False, batch: int | None = None,
                 device: torch.device | str = "cpu", chunk: int | None = None) -> nn.Module:
    """``net`` evaluated with ``precision`` (and compiled for ``batch`` rows), ``chunk`` rows per call if given;
    fp32 without compile, chunk or channels_last returns ``net``."""
    device = torch.device(device)
    dtype = check_precision(precision, device)
    cl = use_channels_last(net)
    if precision == "fp32" and not compile and not chunk and not cl:
        return net
    if compile and chunk:
        batch = chunk  # the compiled graph only ever sees chunks
    kw = dict(dtype=None if precision == "fp32" else dtype, device_type=device.type, compile=compile, batch=batch,
              channels_last=cl, chunk=chunk)
    # a probability network whose final sigmoid is visible stays an nn.Sequential ending in it (the discriminator
    # field then reads the exact logit, see gpmcli.fields.discriminator)
    if isinstance(net, nn.Sequential) and len(net) > 1 and isinstance(net[-1], nn.Sigmoid):
        return nn.Sequential(NetCall(net[:-1], **kw), net[-1])
    return NetCall(net, **kw)


def apply_to_bundle(bundle, *, precision: str = "fp32", compile: bool = False, batch: int | None = None,
                    device: torch.device | str = "cpu", chunk: int | None = None) -> dict[str, Any]:
    """Wrap every network of ``bundle`` in place (``chunk``: fixed rows per evaluation, see :func:`net_chunk`);
    returns what run.json records."""
    device = torch.device(device)
    check_precision(precision, device)
    channels_last_enabled()  # a bad $GPM_CHANNELS_LAST is refused whatever the bundle holds
    wrapped, cl = [], False
    for role, comp in list(bundle.components.items()):
        if _is_network(comp.module) and (precision != "fp32" or compile or chunk or use_channels_last(comp.module)):
            bundle.components[role] = dataclasses.replace(
                comp, module=wrap_network(comp.module, precision=precision, compile=compile, batch=batch,
                                          device=device, chunk=chunk))
            wrapped.append(role)
            cl = cl or use_channels_last(comp.module)
    if compile and chunk:
        batch = chunk
    return {"precision": precision, "network_dtype": str(PRECISIONS[precision]).replace("torch.", ""),
            "particle_dtype": "float32", "compile": compile,
            "compile_backend": str(compile_backend()) if compile else None,
            "fixed_batch": batch if compile else None,
            "channels_last": cl,
            "network_chunk": chunk if wrapped else None, "networks": wrapped}
