"""Every released UMT checkpoint by name: the table of the official files and the one way a name
becomes a local file.

The official weights (Li et al., ICCV 2023) moved from the paper's download links to the
Hugging Face hub repository ``OpenGVLab/UMT``, in ``single_modality/`` (stage-1 pretraining,
classification and AVA fine-tuning) and ``multi_modality/`` (stage-2 pretraining, retrieval and
QA fine-tuning). Each :class:`Release` names one file, says what it is and what the paper reports
for it, and carries the constructor sizes the file cannot tell (frames, resolution, attention
heads), which the loader passes as defaults beneath the caller's own.

:func:`checkpoint_path` turns a name into a file through huggingface_hub's cache: downloaded when
the hub is reachable, taken from the cache when it is not (or with ``HF_HUB_OFFLINE=1``), else a
one-line :class:`umt.errors.MachineError` naming the file and the two ways to get it. A string
that is an existing path is always that path, never a name.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from umt.errors import InputError, MachineError

__all__ = [
    "DEFAULT_RELEASES",
    "RELEASES",
    "REPO",
    "Release",
    "cache_dir",
    "cached_file",
    "checkpoint_exists",
    "checkpoint_path",
    "find_release",
    "release",
    "release_hint",
    "releases",
]

REPO = "OpenGVLab/UMT"
"""The Hugging Face hub repository of the official weights."""


@dataclass(frozen=True)
class Release:
    """One released file.

    ``name``: what umt calls it (``umt-b16-k400``); ``path``: its path in ``repo``; ``what``: the
    model and how it was trained; ``figure``: the number the paper / official model zoo reports
    for it ("" when none); ``params``: its parameter count, from the official architecture;
    ``sizes``: the constructor sizes the file does not store, in :func:`umt.load_checkpoint`'s
    flat names (``num_frames``, ``img_size``, ``num_heads``, ``text_num_heads``,
    ``teacher_heads``, ``teacher_img_size``, ``teacher_return_layers``).
    """

    name: str
    path: str
    what: str
    figure: str
    params: int
    sizes: Mapping[str, int] = field(default_factory=dict)
    repo: str = REPO

    @property
    def approx_bytes(self) -> int:
        """The file's approximate size: the parameters in float32 (the hub lists the exact one)."""
        return 4 * self.params

    @property
    def has_teacher(self) -> bool:
        """Whether the file carries the frozen CLIP teacher (the stage-2 pretraining files)."""
        return any(k.startswith("teacher_") for k in self.sizes)

    def overrides_for(self, part: str) -> dict[str, Any]:
        """The sizes as the family loading ``part`` of the file takes them: a teacher alone takes
        ``heads`` / ``img_size``; a video encoder alone its own three; a whole video-text or QA
        model all of them (flat names); any other part none."""
        if part == "teacher":
            return {
                k[len("teacher_") :]: v for k, v in self.sizes.items() if k.startswith("teacher_")
            }
        if part == "student":
            return {k: v for k, v in self.sizes.items() if not k.startswith(("text_", "teacher_"))}
        if part in ("video-text", "video-qa"):
            return dict(self.sizes)
        return {}


def _vision(big: bool, frames: int = 8, img: int = 224) -> dict[str, int]:
    return {"num_frames": frames, "img_size": img, "num_heads": 16 if big else 12}


def _multimodal(big: bool, frames: int, teacher: bool) -> dict[str, int]:
    sizes = {**_vision(big, frames), "text_num_heads": 16 if big else 12}
    if teacher:  # CLIP-B/16 at 224 px, CLIP-L/14 at 196 px; its last 6 layers (official)
        sizes.update(
            teacher_heads=16 if big else 12,
            teacher_img_size=196 if big else 224,
            teacher_return_layers=6,
        )
    return sizes


# Parameter counts of the official architectures (the registry's variants with the release's
# head and clip; tests/test_released.py rebuilds each on the meta device).
_PARAMS = {
    ("b16", "pt"): 88_005_888,
    ("l16", "pt"): 307_806_720,
    ("b16", 710, 8, 224): 86_183_366,
    ("l16", 710, 8, 224): 303_802_054,
    ("b16", 400, 8, 224): 85_944_976,
    ("l16", 400, 8, 224): 303_484_304,
    ("l16", 400, 16, 224): 306_695_568,
    ("b16", 600, 8, 224): 86_098_776,
    ("l16", 600, 8, 224): 303_689_304,
    ("l16", 600, 16, 224): 306_900_568,
    ("b16", 700, 8, 224): 86_175_676,
    ("l16", 700, 8, 224): 303_791_804,
    ("l16", 700, 16, 224): 307_003_068,
    ("b16", 339, 8, 224): 85_898_067,
    ("b16", 339, 8, 384): 89_437_011,
    ("l16", 339, 8, 224): 303_421_779,
    ("l16", 339, 8, 384): 308_140_371,
    ("b16", 174, 8, 224): 85_771_182,
    ("l16", 174, 8, 224): 303_252_654,
    ("b16", "ava"): 85_698_896,
    ("l16", "ava"): 303_156_304,
    ("b16", "vt"): 291_595_069,
    ("l16", "vt"): 969_466_685,
    ("b16", "ret"): 202_411_267,
    ("l16", "ret"): 659_747_331,
    ("b16", "qa"): 254_435_898,
    ("l16", "qa"): 775_017_274,
}


def _single() -> list[Release]:
    out = []
    for s in ("b16", "l16"):
        big, model = s == "l16", f"UMT-{s[0].upper()}/16"
        out.append(
            Release(
                f"umt-{s}-pt",
                f"single_modality/{s}_ptk710_f8_res224.pth",
                f"{model} stage-1 pretrained on K710 (200 epochs; recipe umt-{s}-k710), 8x224",
                "",
                _PARAMS[(s, "pt")],
                _vision(big),
            )
        )
    # (name suffix, file middle, what, classes, frames, resolution, {model: figure})
    classifiers = [
        ("k710", "ftk710", "K710 fine-tuned", 710, 8, 224, {"b16": "81.9", "l16": "86.0"}),
        (
            "k400",
            "ftk710_ftk400",
            "K400 fine-tuned (after K710)",
            400,
            8,
            224,
            {"b16": "87.4", "l16": "90.3"},
        ),
        (
            "k400-f16",
            "ftk710_ftk400",
            "K400 fine-tuned (after K710)",
            400,
            16,
            224,
            {"l16": "90.6"},
        ),
        (
            "k600",
            "ftk710_ftk600",
            "K600 fine-tuned (after K710)",
            600,
            8,
            224,
            {"b16": "87.8", "l16": "90.4"},
        ),
        (
            "k600-f16",
            "ftk710_ftk600",
            "K600 fine-tuned (after K710)",
            600,
            16,
            224,
            {"l16": "90.5"},
        ),
        (
            "k700",
            "ftk710_ftk700",
            "K700 fine-tuned (after K710)",
            700,
            8,
            224,
            {"b16": "78.5", "l16": "83.2"},
        ),
        (
            "k700-f16",
            "ftk710_ftk700",
            "K700 fine-tuned (after K710)",
            700,
            16,
            224,
            {"l16": "83.6"},
        ),
        (
            "mit",
            "ftk710_ftk400_ftmitv1",
            "Moments in Time v1 fine-tuned (after K710, K400)",
            339,
            8,
            224,
            {"b16": "44.6", "l16": "48.0"},
        ),
        (
            "mit-384",
            "ftk710_ftk400_ftmitv1",
            "Moments in Time v1 fine-tuned (after K710, K400)",
            339,
            8,
            384,
            {"b16": "45.5", "l16": "48.7"},
        ),
        (
            "ssv2",
            "ftk710_ftssv2",
            "SSv2 fine-tuned (after K710)",
            174,
            8,
            224,
            {"b16": "70.8", "l16": "74.7"},
        ),
    ]
    for suffix, middle, what, classes, frames, img, figures in classifiers:
        for s, figure in figures.items():
            model = f"UMT-{s[0].upper()}/16"
            out.append(
                Release(
                    f"umt-{s}-{suffix}",
                    f"single_modality/{s}_ptk710_{middle}_f{frames}_res{img}.pth",
                    f"{model} {what}, {classes} classes, {frames}x{img}",
                    f"top-1 {figure} ({frames}x3x4 views)",
                    _PARAMS[(s, classes, frames, img)],
                    _vision(s == "l16", frames, img),
                )
            )
    for s, figure in (("b16", "33.5"), ("l16", "39.8")):
        out.append(
            Release(
                f"umt-{s}-ava",
                f"single_modality/{s}_ptk710_ftk710_ftava_f8_res224.pth",
                f"UMT-{s[0].upper()}/16 AVA v2.2 action detector (after K710), 8x224",
                f"mAP {figure}",
                _PARAMS[(s, "ava")],
                _vision(s == "l16"),
            )
        )
    return out


# Official zoo figures of the 25M models (B/16, L/16), and of the 5M / 17M / 25M pretraining.
_ZERO_SHOT = {"b16": ("29.6", "35.5", "35.2"), "l16": ("33.3", "42.6", "40.7")}
_RETRIEVAL = {  # name, file middle, what, (B/16 T2V R@1, L/16 T2V R@1)
    "msrvtt": ("ret_msrvtt", "MSRVTT retrieval", ("51.0", "58.8")),
    "didemo": ("ret_didemo", "DiDeMo retrieval", ("61.6", "70.4")),
    "anet": ("ret_anet", "ActivityNet retrieval", ("58.3", "66.8")),
    "lsmdc": ("ret_lsmdc", "LSMDC retrieval", ("32.7", "43.0")),
    "msvd": ("ret_msvd", "MSVD retrieval", ("50.8", "58.2")),
    "ssv2-label": ("ret_ssv2_label", "SSv2-label retrieval", ("64.2", "73.3")),
    "ssv2-tpl": ("ret_ssv2_tpl", "SSv2-template retrieval", ("87.9", "90.8")),
}
_QA = {
    "anet": ("qa_anet", "ActivityNet-QA", ("44.8", "47.9")),
    "msrvtt": ("qa_msrvtt", "MSRVTT-QA", ("44.9", "47.1")),
    "msvd": ("qa_msvd", "MSVD-QA", ("49.5", "55.2")),
}


def _multi() -> list[Release]:
    out = []
    data = {
        "5m": "CC3M + WebVid2M",
        "17m": "CC3M + CC12M + COCO + VG + SBU + WebVid2M",
        "25m": "CC3M + CC12M + COCO + VG + SBU + WebVid10M",
    }
    for s in ("b16", "l16"):
        big, model = s == "l16", f"UMT-{s[0].upper()}/16"
        for corpus, figure in zip(data, _ZERO_SHOT[s]):
            out.append(
                Release(
                    f"umt-{s}-{corpus}",
                    f"multi_modality/{s}_{corpus}.pth",
                    f"{model} stage-2 video-text model pretrained on {corpus.upper()} "
                    f"({data[corpus]}), with its CLIP teacher, 4x224",
                    f"MSRVTT zero-shot T2V R@1 {figure}",
                    _PARAMS[(s, "vt")],
                    _multimodal(big, 4, teacher=True),
                )
            )
        for name, (middle, what, figures) in _RETRIEVAL.items():
            out.append(
                Release(
                    f"umt-{s}-{name}-ret",
                    f"multi_modality/{middle}_{s}_25m.pth",
                    f"{model} 25M {what} fine-tuned, 12x224",
                    f"T2V R@1 {figures[big]}",
                    _PARAMS[(s, "ret")],
                    _multimodal(big, 12, teacher=False),
                )
            )
        for name, (middle, what, figures) in _QA.items():
            out.append(
                Release(
                    f"umt-{s}-{name}-qa",
                    f"multi_modality/{middle}_{s}_25m.pth",
                    f"{model} 25M {what} fine-tuned, 12x224",
                    f"accuracy {figures[big]}",
                    _PARAMS[(s, "qa")],
                    _multimodal(big, 12, teacher=False),
                )
            )
    return out


RELEASES: dict[str, Release] = {r.name: r for r in _single() + _multi()}
"""Every released file by name, in the order of the official model zoo."""

DEFAULT_RELEASES: dict[str, str] = {
    "umt-b16": "umt-b16-pt",
    "umt-l16": "umt-l16-pt",
    "umt-b16-vt": "umt-b16-25m",
    "umt-l16-vt": "umt-l16-25m",
    "umt-b16-ava": "umt-b16-ava",
    "umt-l16-ava": "umt-l16-ava",
}
"""What ``create_model(variant, pretrained=True)`` loads."""


def releases() -> list[Release]:
    """The released files, in the order of the official model zoo."""
    return list(RELEASES.values())


def release(name: str) -> Release:
    """The release called ``name``; an unknown name is an :class:`InputError` naming the
    closest ones."""
    found = RELEASES.get(name)
    if found is None:
        raise InputError(f"{name}: not a released checkpoint{release_hint(name) or _LIST}")
    return found


_LIST = "; 'umt models' lists them"


def find_release(source: str | os.PathLike | None) -> Release | None:
    """The release ``source`` names, or None: an existing file or folder is a path, never a
    name."""
    if source is None or isinstance(source, bytes):
        return None
    text = os.fspath(source)
    if text not in RELEASES or Path(text).exists():
        return None
    return RELEASES[text]


def checkpoint_exists(source: str | os.PathLike | None) -> bool:
    """Whether ``source`` is an existing file or folder or a released name (which may still
    need downloading: :func:`checkpoint_path` gets it)."""
    if source is None:
        return False
    return Path(source).exists() or find_release(source) is not None


def release_hint(source: str | os.PathLike) -> str:
    """For a path that does not exist: ``" (did you mean the released umt-b16-k400? ...)"``
    when it is close to a released name, else ``""``."""
    text = os.fspath(source)
    close = difflib.get_close_matches(text, list(RELEASES), n=2, cutoff=0.75)
    if not close:
        return ""
    return f" (did you mean the released {' or '.join(close)}?{_LIST})"


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_file(rel: Release) -> Path | None:
    """The file of ``rel`` in huggingface_hub's cache, or None (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(rel.repo, rel.path)
    return Path(found) if isinstance(found, str) else None


def checkpoint_path(source: str | os.PathLike) -> Path:
    """The local file of ``source``: an existing path as it is; a released name from
    huggingface_hub's cache, downloaded first when the hub is reachable; anything else as a
    path (its reader reports it missing).

    A name that is neither cached nor downloadable raises one line
    (:class:`umt.errors.MachineError`) naming the file and the two ways to get it.
    """
    rel = find_release(source)
    if rel is None:
        return Path(source)
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    where = f"{rel.repo}/{rel.path}"
    by_hand = f"or download {where} from https://huggingface.co/{rel.repo} and pass its path"
    # An unreachable hub makes huggingface_hub retry for ~20 s, warning at each try: the one
    # line below says it all, so those warnings are held back while the call runs.
    http_log = logging.getLogger("huggingface_hub.utils._http")
    level = http_log.level
    http_log.setLevel(logging.ERROR)
    try:
        return Path(hf_hub_download(rel.repo, rel.path))  # offline-ok: the one download call
    except LocalEntryNotFoundError:
        offline = constants.HF_HUB_OFFLINE
        why = "HF_HUB_OFFLINE is set" if offline else "the hub is unreachable"
        connect = "connect once (without HF_HUB_OFFLINE)" if offline else "connect once"
        raise MachineError(
            f"{rel.name}: not in the Hugging Face cache ({cache_dir()}) and {why}: "
            f"{connect}, {by_hand}"
        ) from None
    except (RepositoryNotFoundError, GatedRepoError, EntryNotFoundError) as err:
        raise MachineError(
            f"{rel.name}: the hub does not serve {where} ({type(err).__name__}); {by_hand}"
        ) from None
    except HfHubHTTPError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MachineError(f"{rel.name}: downloading {where} failed ({first}); {by_hand}") from None
    finally:
        http_log.setLevel(level)
