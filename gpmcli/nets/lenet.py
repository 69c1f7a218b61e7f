"""LeNet-5 as in csinva/gan-vae-pretrained-pytorch (the MNIST classifier in shared/assets/csinva-mnist-lenet).

State-dict keys ``convnet.c1|c3|c5`` and ``fc.f6|f7``; input 1x32x32 in [0, 1]; output log-probabilities.
:meth:`features` returns the 84-d f6 activations used by FD-LeNet.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from gpmcli.nets import register_arch


@register_arch("lenet5")
class LeNet5(nn.Module):
    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.convnet = nn.Sequential(OrderedDict([
            ("c1", nn.Conv2d(1, 6, 5)), ("relu1", nn.ReLU()), ("s2", nn.MaxPool2d(2, 2)),
            ("c3", nn.Conv2d(6, 16, 5)), ("relu3", nn.ReLU()), ("s4", nn.MaxPool2d(2, 2)),
            ("c5", nn.Conv2d(16, 120, 5)), ("relu5", nn.ReLU()),
        ]))
        self.fc = nn.Sequential(OrderedDict([
            ("f6", nn.Linear(120, 84)), ("relu6", nn.ReLU()), ("f7", nn.Linear(84, n_classes)),
            ("sig7", nn.LogSoftmax(dim=-1)),
        ]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """84-d f6 features (after ReLU) of images 1x32x32 in [0, 1]."""
        h = self.convnet(x).flatten(1)
        return self.fc.relu6(self.fc.f6(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convnet(x).flatten(1))
