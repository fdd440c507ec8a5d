"""Early exits (BranchyNet, as Edgent uses them): a small CNN with three exits, trained here on a
real data set that ships inside a package (scikit-learn's handwritten digits: 1797 8x8 images).

The model is a DAG with several outputs, one per exit; the cost graph marks each exit's node
with `exit` = its accuracy on the held-out test split, and a plan for exit i runs only the nodes
that exit i needs. A digit becomes a camera frame like any other: the 8x8 image (0..16) scaled
to 0..255, resized to 32x32 and repeated on three channels, so it flows through the served
pipeline (uint8 frames in, `Preprocess` inside) unchanged.

The trained weights are one `.pth` file holding the state dict and each exit's test accuracy,
in the order of the model's outputs (`{"state_dict", "exit_accuracy": [...], "meta"}`); the
services load it with `--weights` and mark the exits (`mark_exits`). Any model whose forward
returns one logits tensor per exit works the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.model.models import read_checkpoint

__all__ = ["DigitsExits", "SIDE", "digits_frames", "split_indices", "Trained", "train",
           "exit_accuracy", "save", "load_accuracy", "mark_exits"]

SIDE = 32  # frame side the digits are served at


class DigitsExits(nn.Module):
    """Three conv blocks; an exit after the first, after the second, and at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                    nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.exit1_pool = nn.AdaptiveAvgPool2d(2)
        self.exit1_fc = nn.Linear(16 * 4, 10)
        self.exit2_pool = nn.AdaptiveAvgPool2d(2)
        self.exit2_fc = nn.Linear(32 * 4, 10)
        self.exit3_fc1 = nn.Linear(64 * 4 * 4, 64)
        self.exit3_fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.block1(x)
        b = self.block2(a)
        c = self.block3(b)
        e1 = self.exit1_fc(torch.flatten(self.exit1_pool(a), 1))
        e2 = self.exit2_fc(torch.flatten(self.exit2_pool(b), 1))
        e3 = self.exit3_fc2(F.relu(self.exit3_fc1(torch.flatten(c, 1))))
        return e1, e2, e3


def digits_frames() -> tuple[torch.Tensor, torch.Tensor]:
    """Every digit as a served frame (N, 3, SIDE, SIDE) uint8, and its label (N,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits data set ships with scikit-learn: pip install scikit-learn "
                          "(it is in this project's dev extras)") from None
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    frames = F.interpolate(images, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    frames = frames.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)
    return frames, torch.tensor(digits.target, dtype=torch.int64)


def split_indices(n: int, test_share: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded train/test split: the same images are held out on every machine."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_share))
    return perm[n_test:], perm[:n_test]


@dataclass(frozen=True)
class Trained:
    state_dict: dict[str, torch.Tensor]
    exit_accuracy: list[float]  # test accuracy of each output (exit), in the model's order
    meta: dict[str, Any]


def exit_accuracy(served: nn.Module, frames: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Each exit's top-1 accuracy on these frames (the served model: frames in, exits out)."""
    with torch.no_grad():
        outs = served(frames)
    return [float((o.argmax(1) == labels).float().mean()) for o in outs]


def train(epochs: int = 30, seed: int = 0, weights: tuple[float, ...] = (0.5, 0.7, 1.0),
          batch: int = 64, lr: float = 3e-3, log: Any = None) -> Trained:
    """Train all exits jointly (BranchyNet's weighted sum of the exits' losses) on the train
    split; report each exit's accuracy on the test split. About a minute on two CPU cores."""
    from common.model.models import Preprocess

    t0 = time.perf_counter()
    frames, labels = digits_frames()
    train_idx, test_idx = split_indices(len(labels), seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsExits()
        served = Preprocess(model)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            served.train()
            order = train_idx[torch.randperm(len(train_idx), generator=gen)]
            for i in range(0, len(order), batch):
                idx = order[i:i + batch]
                outs = served(frames[idx])
                loss = sum(w * F.cross_entropy(o, labels[idx])
                           for w, o in zip(weights, outs, strict=True))
                opt.zero_grad()
                loss.backward()
                opt.step()
            if log is not None:
                log(epoch + 1, epochs, float(loss.detach()))
    served.eval()
    acc = exit_accuracy(served, frames[test_idx], labels[test_idx])
    meta = {"data": "scikit-learn digits", "train": len(train_idx), "test": len(test_idx),
            "epochs": epochs, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)}
    return Trained({k: v.clone() for k, v in model.state_dict().items()}, acc, meta)


def save(trained: Trained, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": trained.state_dict, "exit_accuracy": trained.exit_accuracy,
                "meta": trained.meta}, out)
    return out


def load_accuracy(path: str | Path | None) -> list[float]:
    """The exit accuracies a weights file carries, one per model output ([] if none)."""
    if not path:
        return []
    doc = read_checkpoint(path)
    acc = doc.get("exit_accuracy", []) if isinstance(doc, dict) else []
    return [float(a) for a in acc] if isinstance(acc, (list, tuple)) else []


def mark_exits(dag: Any, outputs: list[str], accuracy: list[float]) -> None:
    """Mark each output node of the DAG as an early exit with its accuracy (DESIGN §3)."""
    if not accuracy:
        return
    if len(accuracy) != len(outputs):
        raise ValueError(f"the weights give {len(accuracy)} exit accuracies, the model has "
                         f"{len(outputs)} outputs")
    for node, acc in zip(outputs, accuracy, strict=True):
        dag.nodes[node]["exit"] = float(acc)
