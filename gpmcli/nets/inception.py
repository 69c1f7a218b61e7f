"""The FID variant of Inception-v3 (TF 2015-12-05 graph), 2048-d pool3 features.

The module names follow the state-dict layout of the ``pt_inception-2015-12-05-6726825d.pth`` weights file that
pytorch-fid loads (torch-fidelity ships the same tensors as ``weights-inception-2015-12-05-6726825d.pth``): one entry per
conv + batch-norm pair, ``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean`` and so on, plus the
1008-way ``fc`` head, which is not needed for features and is ignored when loading.

Differences from the ImageNet Inception-v3 that make this the *FID* network: the average pools inside the A, C and
first E blocks do not count the zero padding, and the last E block max-pools its pool branch. Batch-norm eps is 1e-3.

The network takes float images already resized to 299x299 and scaled to [-1, 1]; resizing and scaling are the
pipeline's job (:mod:`gpmcli.metrics.features`), because the two supported conventions differ in both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpmcli.nets import register_arch


class ConvBN(nn.Module):
    """conv (no bias) + batch norm (eps 1e-3) + ReLU; :meth:`fuse` folds the norm into the conv for inference."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        # folded weights live in non-persistent buffers: they follow .to(device) but stay out of the state dict
        self.register_buffer("fused_weight", None, persistent=False)
        self.register_buffer("fused_bias", None, persistent=False)

    @torch.no_grad()
    def fuse(self) -> None:
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        self.fused_weight = self.conv.weight * scale.view(-1, 1, 1, 1)
        self.fused_bias = self.bn.bias - self.bn.running_mean * scale

    def unfuse(self) -> None:
        self.fused_weight = None
        self.fused_bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_weight is not None:
            c = self.conv
            return F.relu(F.conv2d(x, self.fused_weight, self.fused_bias, c.stride, c.padding), inplace=True)
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _Heads(nn.Module):
    """Mixin for the blocks whose 1x1 branch heads read the same input: after :meth:`fuse_heads` they run as ONE
    convolution (the folded weights stacked along the output channels) and the pieces are split off its output.

    With ``pool_head`` the last head is the pool branch's 1x1 convolution, which is moved in front of the 3x3 average
    pool: both are linear and the pool's weights (zero padding not counted) sum to one per output pixel, so
    ``avg(conv(x) + b) == conv(avg(x)) + b`` up to float rounding, and the pool then runs on that branch's few output
    channels instead of on every input channel.
    """

    head_names: tuple[str, ...] = ()
    pool_head = False

    def _init_heads(self) -> None:
        self.register_buffer("heads_weight", None, persistent=False)
        self.register_buffer("heads_bias", None, persistent=False)
        self.head_sizes: list[int] = []

    @torch.no_grad()
    def fuse_heads(self) -> None:
        convs = [getattr(self, n) for n in self.head_names]
        if any(c.fused_weight is None for c in convs):
            raise RuntimeError("fuse the ConvBN layers before their heads")
        self.heads_weight = torch.cat([c.fused_weight for c in convs])
        self.heads_bias = torch.cat([c.fused_bias for c in convs])
        self.head_sizes = [c.fused_weight.shape[0] for c in convs]

    def unfuse_heads(self) -> None:
        self.heads_weight = self.heads_bias = None

    def heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ReLU'd outputs of the heads (the pool head already pooled), in ``head_names`` order."""
        y = F.conv2d(x, self.heads_weight, self.heads_bias).split(self.head_sizes, 1)
        out = [F.relu(t, inplace=True) for t in (y[:-1] if self.pool_head else y)]
        if self.pool_head:
            out.append(F.relu(_avg3(y[-1]), inplace=True))
        return out


class BlockA(_Heads):
    head_names = ("branch1x1", "branch5x5_1", "branch3x3dbl_1", "branch_pool")
    pool_head = True

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self._init_heads()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x):
        if self.heads_weight is not None:
            a, b, c, d = self.heads(x)
            return torch.cat([a, self.branch5x5_2(b), self.branch3x3dbl_3(self.branch3x3dbl_2(c)), d], 1)
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg3(x))
        return torch.cat([a, b, c, d], 1)


class BlockB(nn.Module):
    """Grid reduction 35 -> 17."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(_Heads):
    """Factorised 7x7 convolutions."""

    head_names = ("branch1x1", "branch7x7_1", "branch7x7dbl_1", "branch_pool")
    pool_head = True

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self._init_heads()
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        if self.heads_weight is not None:
            a, b, c, d = self.heads(x)
            b = self.branch7x7_3(self.branch7x7_2(b))
            for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
                c = m(c)
            return torch.cat([a, b, c, d], 1)
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = x
        for m in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
            c = m(c)
        d = self.branch_pool(_avg3(x))
        return torch.cat([a, b, c, d], 1)


class BlockD(_Heads):
    """Grid reduction 17 -> 8."""

    head_names = ("branch3x3_1", "branch7x7x3_1")

    def __init__(self, cin: int):
        super().__init__()
        self._init_heads()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        if self.heads_weight is not None:
            a, b = self.heads(x)
            a = self.branch3x3_2(a)
            b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(b)))
            return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(_Heads):
    """Expanded filter bank; ``max_pool`` selects the last block's pool branch (the FID graph's quirk)."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self._init_heads()
        self.max_pool = max_pool
        # a max pool does not commute with the convolution: then the pool branch stays on its own
        self.pool_head = not max_pool
        self.head_names = ("branch1x1", "branch3x3_1", "branch3x3dbl_1") + (() if max_pool else ("branch_pool",))
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        if self.heads_weight is not None:
            a, b, c, *d = self.heads(x)
            b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
            c = self.branch3x3dbl_2(c)
            c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
            d = d[0] if d else self.branch_pool(F.max_pool2d(x, 3, stride=1, padding=1))
            return torch.cat([a, b, c, d], 1)
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
        p = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([a, b, c, self.branch_pool(p)], 1)


@register_arch("inception-v3-fid")
class InceptionV3FID(nn.Module):
    """Inception-v3 up to the 2048-d global average pool (``pool3``) of the FID graph.

    ``forward(x)`` takes (B, 3, 299, 299) float images scaled to [-1, 1] and returns (B, 2048) features.
    """

    feature_dim = 2048
    ignored_keys = ("fc.weight", "fc.bias")

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool=False)
        self.Mixed_7c = BlockE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3))

    def fuse(self) -> "InceptionV3FID":
        """Fold every batch norm into its convolution and merge the 1x1 heads of each block into one convolution
        (inference only; features change by float rounding)."""
        for m in self.modules():
            if isinstance(m, ConvBN):
                m.fuse()
        for m in self.modules():
            if isinstance(m, _Heads):
                m.fuse_heads()
        return self

    def load_fid_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load the pytorch-fid / torch-fidelity weights layout, ignoring the classifier head and BN step counters.

        Raises ``ValueError`` naming the first missing or unexpected keys when the file is a different network.
        """
        state = {k: v for k, v in state.items()
                 if k not in self.ignored_keys and not k.endswith("num_batches_tracked")
                 and not k.startswith("AuxLogits.")}
        own = {k for k in self.state_dict() if not k.endswith("num_batches_tracked")}
        missing = sorted(own - set(state))
        unexpected = sorted(set(state) - own)
        if missing or unexpected:
            raise ValueError(f"not FID Inception-v3 weights (missing {missing[:3]}, unexpected {unexpected[:3]})")
        shapes = self.state_dict()
        for k, v in state.items():
            if tuple(v.shape) != tuple(shapes[k].shape):
                raise ValueError(f"not FID Inception-v3 weights ({k} has shape {tuple(v.shape)}, "
                                 f"expected {tuple(shapes[k].shape)})")
        self.load_state_dict(state, strict=False)
        for m in self.modules():
            if isinstance(m, ConvBN):
                m.unfuse()
            elif isinstance(m, _Heads):
                m.unfuse_heads()
