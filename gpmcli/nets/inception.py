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
from gpmcli.nets.inception_blocks import BlockA, BlockB, BlockC, BlockD, BlockE, ConvBN, _Heads


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
