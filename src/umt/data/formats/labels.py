"""Class names of the datasets UMT is fine-tuned on, shipped with the package, and loaders for a
user's own list.

Index order is the one the official UMT label files use, so ``names[i]`` is the class of output
``i`` of an official fine-tuned head:

=========  =====  ===========================================================================
``k400``   400    Kinetics-400, alphabetical by the official class names
``k600``   600    Kinetics-600, alphabetical by the official class names
``k700``   700    Kinetics-700(-2020), alphabetical by the official class names
``k710``   710    the UMT / UniFormerV2 Kinetics-710 order: the 400 Kinetics-400 classes in
                  Kinetics-400 order (under their Kinetics-700 names where Kinetics renamed
                  them, e.g. "inflating balloons" for "balloon blowing"), then the rest
``ssv2``   174    Something-Something v2, in the order of ``something-something-v2-labels.json``
``mit``    339    Moments in Time v1, in the order of its ``moments_categories.txt``
=========  =====  ===========================================================================
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources

from umt.errors import InputError
from umt.textfile import read_text

__all__ = [
    "DATASETS",
    "CLASS_COUNTS",
    "TITLES",
    "class_names",
    "load_class_names",
    "guess_dataset",
    "guess_class_names",
]

DATASETS = ("k400", "k600", "k700", "k710", "ssv2", "mit")
CLASS_COUNTS = {"k400": 400, "k600": 600, "k700": 700, "k710": 710, "ssv2": 174, "mit": 339}
TITLES = {
    "k400": "Kinetics-400",
    "k600": "Kinetics-600",
    "k700": "Kinetics-700",
    "k710": "Kinetics-710",
    "ssv2": "Something-Something v2",
    "mit": "Moments in Time v1",
}
_ALIASES = {
    "kinetics400": "k400",
    "kinetics-400": "k400",
    "kinetics600": "k600",
    "kinetics-600": "k600",
    "kinetics700": "k700",
    "kinetics-700": "k700",
    "kinetics710": "k710",
    "kinetics-710": "k710",
    "sthv2": "ssv2",
    "something-something-v2": "ssv2",
    "mitv1": "mit",
    "moments": "mit",
}


@functools.cache
def _packaged(dataset: str) -> tuple[str, ...]:
    text = (resources.files("umt.data") / "labels" / f"{dataset}.txt").read_text("utf-8")
    return tuple(text.splitlines())


def class_names(dataset: str) -> list[str]:
    """The class names of ``dataset`` (``k400``, ``k600``, ``k700``, ``k710``, ``ssv2``, ``mit``;
    also ``kinetics400``, ``sthv2``, ...), index ``i`` = output ``i`` of the official head."""
    key = str(dataset).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in CLASS_COUNTS:
        raise InputError(f"unknown dataset {dataset!r}; class names ship for {', '.join(DATASETS)}")
    return list(_packaged(key))


def guess_dataset(num_classes: int) -> str | None:
    """The dataset whose class count is ``num_classes`` (400 -> ``"k400"``, 174 -> ``"ssv2"``,
    ...), or None."""
    for name, count in CLASS_COUNTS.items():
        if count == num_classes:
            return name
    return None


def guess_class_names(num_classes: int) -> list[str] | None:
    """The shipped names for a head of ``num_classes`` outputs (see :func:`guess_dataset`), or
    None when no shipped dataset has that many classes."""
    dataset = guess_dataset(num_classes)
    return None if dataset is None else class_names(dataset)


_SHAPES = (
    "one class name per line, a JSON list of names, or a JSON object {name: index} "
    "with indices 0..N-1"
)


def load_class_names(path: str | os.PathLike) -> list[str]:
    """A user's class names, index ``i`` = model output ``i``.

    Accepted: a text file with one name per line (surrounding blanks and trailing empty lines
    dropped); a ``.json`` file holding a list of names or an object ``{name: index}`` (indices
    ints or digit strings covering 0..N-1 once each, as ``something-something-v2-labels.json``).
    Anything else is refused with a ``ValueError`` naming the file.
    """
    path = os.fspath(path)
    text = read_text(path)
    if path.lower().endswith(".json"):
        return _names_from_json(path, text)
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise InputError(f"{path}: no class names; give {_SHAPES}")
    if "" in lines:
        raise InputError(
            f"{path}: line {lines.index('') + 1} is empty; every line must name a class "
            "(line i = class index i - 1)"
        )
    return lines


def _names_from_json(path: str, text: str) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(data, list):
        if not data or not all(isinstance(x, str) and x.strip() for x in data):
            raise InputError(f"{path}: a JSON list must hold non-empty class name strings")
        return [x.strip() for x in data]
    if isinstance(data, dict) and data:
        names: dict[int, str] = {}
        for name, index in data.items():
            if isinstance(index, str) and index.strip().isdigit():
                index = int(index)
            if not isinstance(index, int) or isinstance(index, bool):
                raise InputError(
                    f"{path}: class {name!r} has index {index!r}; a JSON object must map "
                    "each name to an integer index"
                )
            if index in names:
                raise InputError(
                    f"{path}: index {index} is given to both {names[index]!r} and {name!r}"
                )
            names[index] = name
        missing = sorted(set(range(len(names))) - set(names))
        if missing:
            raise InputError(
                f"{path}: indices must be 0..{len(names) - 1} without gaps; {missing[0]} is missing"
            )
        return [names[i] for i in range(len(names))]
    raise InputError(f"{path}: holds a JSON {type(data).__name__}; give {_SHAPES}")
