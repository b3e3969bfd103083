"""``umt visualize-mask``: see which tokens semantic masking keeps."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from umt.config.stage1 import Stage1Config
from umt.data.transforms.video import resolve_mean_std
from umt.masking import per_sample_uniform, semantic_mask
from umt.train.tasks.common import teacher_input


def load_clip(path: str | Path, num_frames: int, size: int) -> torch.Tensor:
    """uint8-range float frames of a video, evenly spaced, short side resized to ``size`` and
    centre-cropped: ``[T, 3, size, size]`` in [0, 1]."""
    from umt.data.decode import probe_video, read_frames

    info = probe_video(str(path))
    n = max(info.num_frames, 1)
    seg = n / num_frames
    idx = [min(int(seg * i + seg / 2), n - 1) for i in range(num_frames)]  # segment centres
    frames = torch.from_numpy(np.ascontiguousarray(read_frames(str(path), idx, layout="TCHW")))
    frames = frames.float() / 255.0  # [T,3,H,W]
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    frames = F.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return frames[:, :, top : top + size, left : left + size].clamp(0, 1)


def _first_synthetic_clip(cfg: Stage1Config) -> Path:
    from umt import data as umt_data
    from umt.train.data import synthetic_root

    root = Path(umt_data.ensure_synthetic_dataset(synthetic_root(cfg)) or synthetic_root(cfg))
    first = (root / "train.csv").read_text().split("\n", 1)[0].split()[0]
    p = Path(first)
    return p if p.is_absolute() else root / p


def visualize_mask(
    cfg: Stage1Config,
    video: str | None = None,
    output: str | Path | BinaryIO = "mask.png",
    seed: int = 0,
    teacher: tuple[torch.nn.Module, str] | None = None,
    title: str | None = None,
) -> Path | BinaryIO:
    """Write a PNG: row 1 the frames with dropped tokens dimmed and kept ones outlined, row 2
    the teacher's class-token attention per frame. ``output``: a file path, or a binary file
    (``io.BytesIO``) the PNG is written into. ``teacher``: the (teacher, description) of
    :func:`~umt.train.tasks.common.build_teacher` when the caller built it once for many
    clips; else it is built from ``cfg``. ``title``: the clip's name in the figure (default
    the file name)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from umt.train.tasks.common import build_teacher

    path = Path(video) if video else _first_synthetic_clip(cfg)
    if not path.is_file():
        raise FileNotFoundError(f"no such video: {path}")
    size = cfg.data.input_size
    frames = load_clip(path, cfg.data.num_frames, size)  # [T,3,S,S] in [0,1]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in resolve_mean_std(cfg.data.mean_std))
    clip = ((frames - mean) / std).permute(1, 0, 2, 3).unsqueeze(0)  # [1,3,T,S,S]
    if teacher is None:
        teacher = build_teacher(cfg, log=lambda line: print(line, flush=True))
    teacher, desc = teacher
    with torch.no_grad():
        tvideo = teacher_input(clip, cfg.teacher.img_size, cfg.data.mean_std, cfg.data.teacher_norm)
        _, attn = teacher(tvideo)  # attn [1,T,HW]
    T, HW = attn.shape[1:]
    mask = semantic_mask(attn.float(), cfg.mask.ratio, uniform=per_sample_uniform([seed], (T, HW)))
    grid = int(round(HW**0.5))
    cell = size / grid
    kept = (~mask).reshape(T, grid, grid)  # [T,g,g]
    heat = attn[0].reshape(T, grid, grid)

    fig, axes = plt.subplots(2, T, figsize=(2.2 * T, 4.8), dpi=100, squeeze=False)
    for t in range(T):
        img = frames[t].permute(1, 2, 0).numpy()
        dim = np.repeat(np.repeat(kept[t].numpy(), int(np.ceil(cell)), 0), int(np.ceil(cell)), 1)
        dim = dim[:size, :size, None]
        ax = axes[0, t]
        ax.imshow(img * (0.25 + 0.75 * dim))
        for i, j in zip(*np.nonzero(kept[t].numpy())):
            ax.add_patch(Rectangle((j * cell, i * cell), cell, cell, fill=False, ec="lime", lw=0.8))
        ax.set_title(f"frame {t}: {int(kept[t].sum())}/{HW} kept", fontsize=8)
        ax.axis("off")
        axes[1, t].imshow(heat[t].numpy(), cmap="magma")
        axes[1, t].set_title("teacher [CLS] attention", fontsize=7)
        axes[1, t].axis("off")
    teacher_line = textwrap.fill(desc, width=int(34 * max(T, 3)))
    name = title or path.name
    fig.suptitle(f"{name}: semantic mask, ratio {cfg.mask.ratio}\n{teacher_line}", fontsize=8)
    fig.tight_layout()
    if not isinstance(output, (str, Path)):
        fig.savefig(output, format="png")
        plt.close(fig)
        return output
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
