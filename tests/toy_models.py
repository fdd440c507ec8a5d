"""Small modules with the awkward shapes real models have, for fast exact tests and CLI examples."""

from __future__ import annotations

import torch
from torch import nn


class TwoInputs(nn.Module):
    """Two inputs, a tuple-output node (chunk), a parameter read directly (get_attr), a shape int."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.randn(1, 4, 1, 1))
        self.head = nn.Linear(4, 5)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_a(a)) + self.conv_b(b)
        left, right = x.chunk(2, dim=1)
        y = left * self.scale + right.sigmoid()
        n = y.size(0)
        return self.head(y.mean(dim=(2, 3)).view(n, -1))


class Branchy(nn.Module):
    """One tensor consumed by several branches (multi-tensor cuts); returns a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.b1 = nn.Conv2d(6, 6, 1)
        self.b2 = nn.Conv2d(6, 6, 3, padding=1)
        self.b3 = nn.Conv2d(6, 6, 5, padding=2)
        self.fc = nn.Linear(18, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.relu(self.stem(x))
        y = torch.cat([self.b1(s), self.b2(s), self.b3(s)], dim=1)
        return self.fc(torch.flatten(y.mean(dim=(2, 3)), 1)), s.mean()


def two_inputs() -> nn.Module:
    return TwoInputs()


def branchy() -> nn.Module:
    return Branchy()
