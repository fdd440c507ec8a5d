"""The model zoo: torchvision models by name, or a user's module by `package.module:factory`.

Weights come from a local file when one is given (nothing is downloaded); otherwise the model is
built with random weights from a fixed seed, so that an edge agent and a cloud worker that build the
same model independently hold the same weights.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from common.errors import ModelLoadError

__all__ = [
    "ZOO", "load_model", "example_input", "input_shape_for", "Preprocess",
    "load_served", "synthetic_frame",
]

#: torchvision models we support by name, with their natural input resolution.
ZOO: dict[str, int] = {
    "alexnet": 224,
    "vgg16": 224,
    "resnet18": 224,
    "resnet50": 224,
    "googlenet": 224,
    "inception_v3": 299,
    "mobilenet_v2": 224,
    "mobilenet_v3_large": 224,
    "densenet121": 224,
    "efficientnet_b0": 224,
    "regnet_y_400mf": 224,
    "shufflenet_v2_x1_0": 224,
    "squeezenet1_0": 224,
    "convnext_tiny": 224,
    "vit_b_16": 224,
    "swin_t": 224,
}

#: this project's own models (not torchvision's), with their input resolution
OWN: dict[str, int] = {
    "digits_exits": 32,  # common.model.exits: a small CNN with three early exits (digits)
}
#: where each of them is built: by import path, like a user's model, so that this module imports
#: none of them (they build on `Preprocess`, here: importing them would close a circle)
OWN_FACTORIES: dict[str, str] = {"digits_exits": "common.model.exits:DigitsExits"}

# Auxiliary training heads: built without them (eval never runs them), and their keys in a
# checkpoint are ignored rather than rejected.
_AUX_FREE = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}
DEFAULT_SEED = 0



def _build(name: str) -> nn.Module:
    name = OWN_FACTORIES.get(name, name)
    if name in ZOO:
        import torchvision.models as tvm

        kwargs: dict[str, object] = {"weights": None}
        if name in _AUX_FREE:
            kwargs.update(aux_logits=False, init_weights=True)
        return getattr(tvm, name)(**kwargs)
    if ":" in name:
        module_path, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_path), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(f"cannot import {name!r}: {exc}") from exc
        model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
        if not isinstance(model, nn.Module):
            raise ModelLoadError(f"{name!r} gave {type(model).__name__}, not a torch.nn.Module")
        return model
    known = ", ".join(sorted([*ZOO, *OWN]))
    raise ModelLoadError(
        f"unknown model {name!r}: use one of {known}, or 'package.module:factory' for your own"
    )


def read_checkpoint(path: str | Path) -> object:
    """A weights file's contents, tensors only (`weights_only`: nothing in it runs); a missing or
    unreadable file is one clear error, not torch's own (IndexError, KeyError, ...)."""
    file = Path(path)
    if not file.is_file():
        raise ModelLoadError(f"weights file {str(path)!r} does not exist")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a bad file, some over many lines
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise ModelLoadError(f"cannot read weights from {str(path)!r}: not a torch checkpoint of "
                             f"tensors only, which is all dads loads ({type(exc).__name__}: "
                             f"{first})") from None


def _load_weights(model: nn.Module, name: str, path: str) -> None:
    state = read_checkpoint(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path!r} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    ignored = _AUX_FREE.get(name, ())
    state = {k: v for k, v in state.items() if not k.startswith(ignored)}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"weights in {path!r} do not fit {name}: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


def load_model(name: str, weights: str | None = None, seed: int = DEFAULT_SEED) -> nn.Module:
    """Build a model in eval mode; real weights from `weights` if given, else seeded random ones."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build(name)
    if weights is not None:
        _load_weights(model, name, weights)
    return model.eval()


def input_shape_for(name: str, batch: int = 1) -> tuple[int, int, int, int]:
    """The natural NCHW input shape of a model (224x224 unless the zoo says otherwise)."""
    side = ZOO.get(name) or OWN.get(name, 224)
    return (batch, 3, side, side)


def example_input(
    name: str, shape: tuple[int, ...] | None = None, seed: int = DEFAULT_SEED
) -> torch.Tensor:
    """A deterministic random input of the model's natural shape (or `shape`)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape or input_shape_for(name), generator=gen)


class Preprocess(nn.Module):
    """uint8 NCHW frame in, model output out: normalisation is part of the traced graph.

    So the graph's input is the camera frame itself, and a cut that sends the raw input sends
    one byte per pixel and channel (what the cost graph charges), with exactly the same result.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        x = frame.float() / 255.0
        return self.model((x - self.mean) / self.std)


def load_served(name: str, weights: str | None = None, seed: int = DEFAULT_SEED) -> nn.Module:
    """The model as the services run it: `Preprocess(load_model(...))`, in eval mode."""
    return Preprocess(load_model(name, weights or None, seed)).eval()


def synthetic_frame(frame_id: int, shape: tuple[int, ...]) -> torch.Tensor:
    """A deterministic uint8 frame: anyone can regenerate frame `frame_id` to check a result."""
    gen = torch.Generator().manual_seed(1_000_003 * frame_id + 17)
    return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
