"""The building blocks of the FID Inception-v3 (:mod:`gpmcli.nets.inception`): conv + batch-norm pairs and the
mixed blocks A-E, named as in the state-dict layout of the weights pytorch-fid loads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
