"""Names -> constructors: the model variants (``build_model("umt-b16")``, ``list_models()``) and
the model families :mod:`umt.models.hub` loads and saves through. The public
``umt.create_model`` (:func:`umt.models.hub.create_model`) builds a variant here, and with
``pretrained=`` loads its released weights through the hub.

This module imports no model: each family module registers its own variants
(:func:`register_model`) and itself (:func:`register_family`) when it is imported, and importing
any ``umt.models`` module imports the package, which imports every family.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.errors import InputError
from umt.models._io import CheckpointInfo

__all__ = [
    "Family",
    "OpenedCheckpoint",
    "build_model",
    "families",
    "family_of",
    "family_for_part",
    "list_models",
    "model_class",
    "model_config",
    "register_family",
    "register_model",
]

_REGISTRY: dict[str, tuple[type[nn.Module], dict[str, Any], str]] = {}


def register_model(name: str, cls: type[nn.Module], description: str, **config: Any) -> None:
    """Add a named variant: ``cls(**config)`` (overridable at ``build_model`` time)."""
    if name in _REGISTRY:
        raise InputError(f"model {name!r} is already registered")
    _REGISTRY[name] = (cls, copy.deepcopy(config), description)


def list_models() -> list[str]:
    """Names of the registered variants."""
    return sorted(_REGISTRY)


def model_class(name: str) -> type[nn.Module]:
    """The class of a variant."""
    return _lookup(name)[0]


def model_config(name: str) -> dict[str, Any]:
    """The constructor arguments of a variant (a deep copy)."""
    return copy.deepcopy(_lookup(name)[1])


class UnknownModelError(InputError, KeyError):
    """A model name the registry does not know (exit code 2; also a ``KeyError``)."""

    __str__ = Exception.__str__  # the message as written, not KeyError's quoted repr


def _lookup(name: str) -> tuple[type[nn.Module], dict[str, Any], str]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; known: {', '.join(list_models())}"
        ) from None


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered variant with random weights; keyword arguments override its config.

    Example: ``build_model("umt-b16", num_classes=400, align_layers=0, final_norm=False)`` is the
    K400 fine-tuning model; ``build_model("clip-l14", img_size=196)`` the UMT-L teacher.
    """
    cls, config, _ = _lookup(name)
    return cls(**{**copy.deepcopy(config), **overrides})


# --------------------------------------------------------------------------- families
@dataclass
class OpenedCheckpoint:
    """A checkpoint opened once: its tensors, its umt config (if any), what it holds.

    ``native``: ``(config without "architecture", where it came from)`` for umt's own format;
    ``kind``: ``"umt"`` or the foreign layout :func:`umt.models.hub.detect_checkpoint` named;
    ``which``: the part (family) that loads it; ``pick``: a part taken out of the loaded model;
    ``defaults``: sizes the released-checkpoint table knows for the file (beneath the caller's
    overrides; :mod:`umt.models.released`).
    """

    path: Path
    sd: dict[str, torch.Tensor]
    native: tuple[dict[str, Any], str] | None
    kind: str
    which: str
    pick: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


Loader = Callable[
    [OpenedCheckpoint, bool, dict[str, Any]], tuple[nn.Module, dict[str, Any], list[str]]
]
"""A whole family loader: ``(source, strict, overrides) -> (model, config, sizes assumed)``."""

FromConfig = Callable[
    [Path, dict[str, torch.Tensor], tuple[dict[str, Any], str], bool, dict[str, Any]],
    tuple[nn.Module, dict[str, Any]],
]
"""``(path, state dict, (config, where), strict, overrides) -> (model, config)``."""

FromWeights = Callable[
    [Path, dict[str, torch.Tensor], str, bool, dict[str, Any]],
    tuple[nn.Module, dict[str, Any], list[str]],
]
"""``(path, state dict, kind, strict, overrides) -> (model, config, sizes assumed)``."""


@dataclass(frozen=True)
class Family:
    """One model class and its checkpoint formats, as :mod:`umt.models.hub` uses them.

    ``part``: the name ``load_checkpoint(part=...)`` gives it; ``describe(model, config)``: the
    lines ``umt convert`` reports about a model; ``recognise(state_dict, path)`` names a foreign
    layout it reads (None: not one of its); families are asked in ``order``.

    How the hub loads it: ``check_overrides(overrides)`` refuses names the family does not take
    before any work (None: ``cls``'s constructor arguments); umt's format (``source.native``)
    with ``from_config`` (None: the hub's generic :func:`umt.models.hub.load_native` of
    ``cls``); a foreign layout it recognised with ``from_weights`` (None: refused,
    ``"<path>: a <kind> checkpoint<foreign_hint>"``). ``load(source, strict, overrides)``
    replaces all of that for a family that loads its own way (it checks its own overrides)."""

    cls: type[nn.Module]
    part: str
    describe: Callable[[Any, dict[str, Any]], list[str]]
    recognise: Callable[[dict[str, torch.Tensor], str], CheckpointInfo | None] | None = None
    order: int = 100
    from_config: FromConfig | None = None
    from_weights: FromWeights | None = None
    foreign_hint: str = ""
    check_overrides: Callable[[dict[str, Any]], object] | None = None
    load: Loader | None = None

    @property
    def architecture(self) -> str:
        """The ``config.json`` ``"architecture"`` of this family: the class name."""
        return self.cls.__name__


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    """Make a model class loadable and saveable by :mod:`umt.models.hub`."""
    if family.architecture in _FAMILIES:
        raise InputError(f"architecture {family.architecture!r} is already registered")
    _FAMILIES[family.architecture] = family


def families() -> list[Family]:
    """The registered families, in the order they recognise foreign files."""
    return sorted(_FAMILIES.values(), key=lambda f: f.order)


def family_of(architecture: str) -> Family | None:
    """The family of an ``"architecture"`` name (a class name), or None."""
    return _FAMILIES.get(architecture)


def family_for_part(part: str) -> Family:
    """The family ``load_checkpoint(part=part)`` loads."""
    for fam in _FAMILIES.values():
        if fam.part == part:
            return fam
    raise InputError(f"no model family loads part {part!r}")
