"""AVA action detection: a UMT video ViT that scores person boxes (the official ``AD/`` model).

Mirrors ``single_modality/action_detection/modeling_finetune.py`` (``VisionTransformer``,
L183-332) of the official repository, with the AlphAction RoI pieces it uses
(``alphaction/modeling/poolers.py``, ``alphaction/layers/roi_align_3d.py``,
``alphaction/structures/bounding_box.py``) and the loss / scores of ``engine_for_finetuning.py``:

1. the video ViT (patch embedding, blocks, final LayerNorm; no ``fc_norm``, no mean pooling);
2. the fixed 1-D sin-cos table, built for the training layout ``T x 14 x 14`` (8 frames of
   224 px, patch 16), bicubic-interpolated in space *on the fly* to the token grid of each input
   (``interpolate_pos_embed_online``, L289-292, L362-375): test clips are full frames
   (short side 256), zero-padded to a multiple of the patch;
3. tokens ``[B, N, C]`` -> ``[B, C, T', h, w]`` -> mean over ``T'`` -> ``[B, C, h, w]``;
4. ``torchvision.ops.roi_align`` (7 x 7, ``spatial_scale = 1 / patch``, ``sampling_ratio = 0``,
   ``aligned = False``, torchvision's default, which the official call leaves as it is) on boxes
   in input pixels -> max over the 7 x 7 bins (``MaxPool2d(7)``) -> ``[K, C]``;
5. ``Linear(C, 80)``, initialised ``trunc_normal(std 0.02) x init_scale`` (0.001), bias 0.

The official model has no dropout before the head (its ``drop_rate`` only feeds the
position / attention-projection / MLP dropouts, all 0 in the AVA scripts).

What the official ``forward`` does to the boxes first is left to the caller, as functions here:
training proposals are the ground-truth boxes (at most 100 per clip, :func:`sample_boxes`)
jittered by :func:`jitter_boxes`; test proposals are detector boxes extended by
:func:`extend_boxes`. :func:`detection_loss` is the training loss and :func:`detection_scores`
the test scores.

Boxes are ``[n, 4]`` float tensors ``(x1, y1, x2, y2)`` in pixels of the (resized, cropped,
unpadded) input frame, with AlphAction's inclusive convention (a box's width is
``x2 - x1 + 1``). Image sizes are ``(height, width)`` (torch order; AlphAction's ``BoxList.size``
is ``(width, height)``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.utils.checkpoint import checkpoint

from umt.errors import InputError
from umt.models.layers import interpolate_pos_table, sincos_table
from umt.models.registry import Family, register_family, register_model
from umt.models.video_vit import (
    PatchEmbed3d,
    VideoViT,
    blocks_of,
    clip_grid,
    encoder_mismatch,
    read_student_weights,
)

__all__ = [
    "VideoDetector",
    "jitter_boxes",
    "extend_boxes",
    "sample_boxes",
    "boxes_to_rois",
    "detection_scores",
    "detection_loss",
]

# Official defaults: ``ROIPoolingCfg`` (L174-180), ``random_aug(0.2, 0.1, 0.1, 0.05)`` (L320),
# ``test_ext = (0.1, 0.05)`` (L247), ``proposal_per_clip = 100`` (L248).
JITTER_PARAMS = (0.2, 0.1, 0.1, 0.05)
TEST_EXTEND = (0.1, 0.05)
MAX_PROPOSALS = 100

# Checkpoint parts a detector has no use for (as the official loader, which ignores them as
# unexpected keys): stage-1 alignment heads, stage-2 pooling norm, the classifier's fc_norm.
_UNUSED_PREFIXES = ("align_heads.", "pool_norm.", "fc_norm.")


class VideoDetector(
    nn.Module, PyTorchModelHubMixin, library_name="umt", tags=["video", "umt", "action-detection"]
):
    """UMT video ViT + RoIAlign + linear head for AVA action detection.

    Args:
        img_size: side of the training frames (224); with ``num_frames``, ``tubelet_size`` and
            ``patch_size`` it fixes the layout ``(T', img/p, img/p)`` the sin-cos table is built
            for. Inputs of any size (padded here to a multiple of the patch) use the table
            interpolated to their own token grid.
        patch_size, in_chans, num_frames, tubelet_size: the input layout (AVA: 16, 3, 8, 1).
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias, init_values, layer_norm_eps: the
            encoder, as :class:`~umt.models.video_vit.VideoViT`.
        drop_path_rate: stochastic depth, linearly increasing over the blocks (official AVA
            recipes: 0.2 for B/16, 0.4 for L/16).
        num_classes: action classes (AVA v2.2: 80).
        init_scale: the head's trunc_normal(0.02) weights and zero bias are multiplied by it
            (official ``--init_scale`` 0.001).
        pooler_resolution: RoIAlign output side (7), followed by a max over the bins.
        sampling_ratio: RoIAlign samples per bin and axis (0 = adaptive, ``ceil(bin size)``).
        aligned: RoIAlign's half-pixel offset (False, torchvision's default, as the official).

    ``forward(video, boxes)`` returns ``[sum n_i, num_classes]`` logits.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_frames: int = 8,
        tubelet_size: int = 1,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        init_values: float = 0.0,
        layer_norm_eps: float = 1e-6,
        num_classes: int = 80,
        init_scale: float = 0.001,
        pooler_resolution: int = 7,
        sampling_ratio: int = 0,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        grid = clip_grid(img_size, patch_size, num_frames, tubelet_size)
        if num_classes < 1:
            raise InputError(f"num_classes must be >= 1, got {num_classes}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.pooler_resolution = pooler_resolution
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        # The layout the fixed table is built for (official: all_frames/tubelet x 14 x 14).
        self.grid = grid
        self.grad_checkpoint_blocks = 0

        self.patch_embed = PatchEmbed3d(patch_size, tubelet_size, in_chans, embed_dim)
        n = self.grid[0] * self.grid[1] * self.grid[2]
        self.register_buffer("pos_embed", sincos_table(n, embed_dim), persistent=False)
        self.blocks = blocks_of(
            depth,
            embed_dim,
            num_heads,
            mlp_ratio,
            qkv_bias,
            drop_path_rate,
            init_values,
            layer_norm_eps,
        )
        self.norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.head = nn.Linear(embed_dim, num_classes)
        # The official fine-tuning init (trunc_normal 0.02 Linears, LayerNorm (1, 0)), then the
        # head scaled down (L253-257).
        self.apply(functools.partial(VideoViT._init_module, xavier=False))
        with torch.no_grad():
            self.head.weight.mul_(init_scale)
            self.head.bias.mul_(init_scale)

    # ------------------------------------------------------------------ training helpers
    def get_num_layers(self) -> int:
        """Number of blocks (for layer-wise lr decay: names ``patch_embed.*``, ``blocks.i.*``,
        then ``norm`` / ``head`` on top, as the official)."""
        return len(self.blocks)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay besides the 1-D ones: none (the position
        table is a fixed buffer)."""
        return set()

    def set_grad_checkpointing(self, num_blocks: int | bool = True) -> None:
        """Recompute the first ``num_blocks`` blocks in the backward pass (True = all)."""
        self.grad_checkpoint_blocks = len(self.blocks) if num_blocks is True else int(num_blocks)

    # ------------------------------------------------------------------ positions
    def token_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Token grid ``(T', h, w)`` of an input of ``frames x height x width`` pixels after
        zero-padding height and width up to a multiple of the patch."""
        if frames % self.tubelet_size:
            raise InputError(f"{frames} frames do not split into tubelets of {self.tubelet_size}")
        p = self.patch_size
        return frames // self.tubelet_size, -(-height // p), -(-width // p)

    def position_table(self, grid: Sequence[int]) -> torch.Tensor:
        """The fixed sin-cos table for a token grid ``(T', h, w)``: ``[1, T'*h*w, C]``.

        At the training layout it is the plain table; otherwise each frame's ``14 x 14`` slice
        is resized bicubically (``align_corners=False``) to ``h x w``, as the official
        ``interpolate_pos_embed_online``. (A frame count other than the table's, which the
        official model does not support, is resampled linearly in time after that.)
        """
        grid = tuple(int(g) for g in grid)
        if grid == self.grid:
            return self.pos_embed
        with torch.no_grad():  # a fixed table: never learned (the official detaches it)
            return interpolate_pos_table(self.pos_embed, self.grid, grid)  # [1, T'hw, C]

    def pad_to_patch(self, video: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[B, 3, T, H, W]`` at the bottom and right to a multiple of the patch
        (as the official test collator, ``size_divisible=16``, after normalisation)."""
        p = self.patch_size
        h, w = video.shape[-2:]
        pad_h, pad_w = -h % p, -w % p
        if pad_h or pad_w:
            video = F.pad(video, (0, pad_w, 0, pad_h))
        return video

    # ------------------------------------------------------------------ forward
    def embed(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Patchify (after padding) and add the interpolated positions.

        ``[B, 3, T, H, W] -> ([B, N, C], (T', h, w))`` with ``N = T' * h * w``, token order t, h, w.
        """
        if video.ndim != 5:
            raise InputError(f"expected video [B, 3, T, H, W], got shape {tuple(video.shape)}")
        video = self.pad_to_patch(video)
        grid = self.token_grid(*video.shape[2:])
        tokens = self.patch_embed(video)  # [B, N, C]
        pos = self.position_table(grid).to(device=tokens.device, dtype=tokens.dtype)
        return tokens + pos, grid  # [B, N, C]

    def _run_block(
        self, i: int, x: torch.Tensor, drop_path_noise: torch.Tensor | None
    ) -> torch.Tensor:
        blk = self.blocks[i]
        noise = drop_path_noise[:, i] if drop_path_noise is not None else None  # [B, 2]
        if i < self.grad_checkpoint_blocks and torch.is_grad_enabled():
            return checkpoint(blk, x, noise, use_reentrant=False)
        return blk(x, noise)

    def forward_tokens(
        self, video: torch.Tensor, drop_path_noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Encoder output after the final norm: ``[B, 3, T, H, W] -> ([B, N, C], (T', h, w))``.

        ``drop_path_noise``: optional per-sample drop-path uniforms ``[B, depth, 2]`` (see
        :meth:`VideoViT.forward_intermediates <umt.models.video_vit.VideoViT.forward_intermediates>`).
        """
        x, grid = self.embed(video)  # [B, N, C]
        for i in range(len(self.blocks)):
            x = self._run_block(i, x, drop_path_noise)
        return self.norm(x), grid  # [B, N, C]

    def feature_map(
        self, video: torch.Tensor, drop_path_noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The time-averaged feature map RoIAlign reads: ``[B, 3, T, H, W] -> [B, C, h, w]``."""
        x, (t, h, w) = self.forward_tokens(video, drop_path_noise)  # [B, N, C]
        b, _, c = x.shape
        x = x.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)  # [B, C, T', h, w]
        return x.mean(dim=2)  # [B, C, h, w]

    def pool_boxes(
        self, features: torch.Tensor, boxes: Sequence[torch.Tensor] | torch.Tensor
    ) -> torch.Tensor:
        """RoIAlign + max over the bins on a feature map.

        Args:
            features: ``[B, C, h, w]`` (one cell per patch).
            boxes: per clip ``[n_i, 4]`` boxes ``(x1, y1, x2, y2)`` in input pixels, or the
                rois ``[K, 5]`` ``(clip index, x1, y1, x2, y2)`` of :func:`boxes_to_rois`.

        Returns:
            ``[K, C]`` with ``K = sum n_i``, in the order of the boxes.
        """
        from torchvision.ops import roi_align

        if isinstance(boxes, torch.Tensor):
            rois = boxes.to(device=features.device, dtype=torch.float32)
        else:
            if len(boxes) != features.shape[0]:
                raise InputError(f"{len(boxes)} box sets for {features.shape[0]} clips")
            rois = boxes_to_rois(boxes, features.device)  # [K, 5]
        # Pooled in float32 (torchvision's autocast does the same under AMP).
        r = self.pooler_resolution
        pooled = roi_align(
            features.float(),
            rois,
            output_size=(r, r),
            spatial_scale=1.0 / self.patch_size,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
        )  # [K, C, r, r]
        return pooled.amax(dim=(-2, -1)).to(features.dtype)  # [K, C]

    def roi_features(
        self,
        video: torch.Tensor,
        boxes: Sequence[torch.Tensor],
        drop_path_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-box features: ``video [B, 3, T, H, W]``, ``boxes`` B tensors ``[n_i, 4]``
        (pixels, x1 y1 x2 y2) -> ``[sum n_i, C]``."""
        return self.pool_boxes(self.feature_map(video, drop_path_noise), boxes)

    def forward(
        self,
        video: torch.Tensor,
        boxes: Sequence[torch.Tensor],
        drop_path_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Action logits of every box: ``video [B, 3, T, H, W]`` (normalised), ``boxes`` B
        tensors ``[n_i, 4]`` (pixels of the unpadded frame, x1 y1 x2 y2) -> ``[sum n_i, classes]``.

        The boxes are used as given: jitter (training) or extend (test) them first with
        :func:`jitter_boxes` / :func:`extend_boxes`, as the official forward does."""
        return self.head(self.roi_features(video, boxes, drop_path_noise))  # [K, classes]

    def extra_repr(self) -> str:
        return (
            f"table_grid={self.grid}, roi_align={self.pooler_resolution}x"
            f"{self.pooler_resolution} scale=1/{self.patch_size} "
            f"sampling_ratio={self.sampling_ratio} aligned={self.aligned}"
        )

    # ------------------------------------------------------------------ weights
    def load_backbone(
        self, weights: str | Path | Mapping[str, torch.Tensor], strict: bool = True
    ) -> list[str]:
        """Load a UMT checkpoint's video encoder (and its head when it has ``num_classes``
        rows) into this detector. Returns notes on what was taken and dropped.

        ``weights`` is a path (any layout :func:`umt.models.video_vit.read_student_weights` reads:
        official stage-1 / stage-2 / fine-tuned files, official AVA files, umt folders) or a
        state dict. As the official loader (``run_class_finetuning.py`` L272-321): a head of
        another class count is dropped; ``fc_norm``, alignment heads, a stage-2 ``pool_norm``
        and a learned ``pos_embed`` are not used (this model's table is the fixed sin-cos one);
        the final ``norm`` loads when the checkpoint has one (stage-1 / AVA files; a K710
        fine-tuned file has none, so it keeps its (1, 0) start, as in the official run).

        With ``strict``, an encoder of another size or any other unmatched tensor is an error.
        """
        sd, kind = read_student_weights(weights, encoder_only=False)
        where = str(weights) if isinstance(weights, (str, Path)) else "<state dict>"
        wrong = encoder_mismatch(sd, self)
        if wrong:
            raise InputError(f"{where}: its encoder does not fit this detector: {', '.join(wrong)}")
        notes = [f"{kind} checkpoint"]
        dropped = sorted(k for k in sd if k.startswith(_UNUSED_PREFIXES) or k == "pos_embed")
        for k in dropped:
            del sd[k]
        if dropped:
            parts = sorted({k.split(".")[0] for k in dropped})
            notes.append(f"not used: {', '.join(parts)}")
        if "head.weight" in sd:
            rows = sd["head.weight"].shape[0]
            if sd["head.weight"].shape != self.head.weight.shape:
                del sd["head.weight"]
                sd.pop("head.bias", None)
                notes.append(
                    f"head: {rows} classes in the checkpoint, {self.num_classes} here: kept new"
                )
            else:
                notes.append("head loaded")
        else:
            notes.append("head: none in the checkpoint: kept new")
        if "norm.weight" not in sd:
            notes.append("norm: none in the checkpoint: kept new")
        missing, unexpected = self.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith(("head.", "norm."))]
        if strict and (missing or unexpected):
            raise InputError(
                f"{where}: weights do not fit the detector (missing {missing[:6]}, "
                f"unexpected {unexpected[:6]})"
            )
        if missing or unexpected:
            notes.append(f"missing {missing}, unexpected {unexpected}")
        return notes


# --------------------------------------------------------------------------- boxes
def boxes_to_rois(
    boxes: Sequence[torch.Tensor], device: torch.device | None = None
) -> torch.Tensor:
    """Per-clip boxes -> RoIAlign rois: B tensors ``[n_i, 4]`` -> ``[sum n_i, 5]`` float32
    ``(clip index, x1, y1, x2, y2)`` (AlphAction's ``Pooler3d.convert_to_roi_format``)."""
    rows = []
    for i, b in enumerate(boxes):
        b = torch.as_tensor(b)
        if b.ndim != 2 or b.shape[-1] != 4:
            raise InputError(f"boxes of clip {i} must be [n, 4], got {tuple(b.shape)}")
        b = b.to(device=device, dtype=torch.float32)  # [n_i, 4]
        idx = torch.full((b.shape[0], 1), float(i), dtype=torch.float32, device=b.device)
        rows.append(torch.cat([idx, b], dim=1))  # [n_i, 5]
    if not rows:
        return torch.zeros(0, 5, device=device)
    return torch.cat(rows, dim=0)  # [K, 5]


def _check_boxes(boxes: torch.Tensor) -> torch.Tensor:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise InputError(f"boxes must be [n, 4] (x1, y1, x2, y2), got {tuple(boxes.shape)}")
    return boxes.float()


def jitter_boxes(
    boxes: torch.Tensor,
    image_size: tuple[int, int],
    generator: torch.Generator | None = None,
    params: tuple[float, float, float, float] = JITTER_PARAMS,
) -> torch.Tensor:
    """The official training box jitter (AlphAction ``BoxList.random_aug``).

    ``params = (x_out, x_in, y_out, y_in)`` are fractions of the box width ``w = x2 - x1 + 1``
    and height ``h = y2 - y1 + 1``: each side moves independently and uniformly, by up to
    ``*_out`` outwards (growing the box) and up to ``*_in`` inwards (shrinking it)::

        x1 += w * U(-x_out, x_in)     y1 += h * U(-y_out, y_in)
        x2 += w * U(-x_in, x_out)     y2 += h * U(-y_in, y_out)

    drawn in the order x1, y1, x2, y2 (one ``[n, 1]`` ``torch.rand`` each, so with the same
    RNG state the draws equal the official ones). The official values ``(0.2, 0.1, 0.1, 0.05)``
    let a side move 20 % / 10 % of the width outwards / inwards and 10 % / 5 % of the height.
    Then, as the official: ``x1`` in ``[0, W - 2]``, ``y1`` in ``[0, H - 2]``,
    ``x2 = max(min(x2, W - 1), x1 + 1)`` (same for y), and every coordinate clipped to
    ``[0, W - 1]`` / ``[0, H - 1]``; no box is removed.

    Args:
        boxes: ``[n, 4]`` pixels ``(x1, y1, x2, y2)``.
        image_size: ``(height, width)`` of the frame the boxes live in (the training crop).
        generator: the random source (None: torch's global RNG, as the official).
        params: ``(x_out, x_in, y_out, y_in)``.

    Returns:
        ``[n, 4]`` float32 on the boxes' device.
    """
    boxes = _check_boxes(boxes)
    x_out, x_in, y_out, y_in = (float(v) for v in params)
    height, width = image_size
    n = boxes.shape[0]
    gen_device = generator.device if generator is not None else boxes.device

    def uniform(a: float, b: float) -> torch.Tensor:  # [n, 1] in [a, b)
        u = torch.rand(n, 1, generator=generator, device=gen_device, dtype=torch.float32)
        return (u * (b - a) + a).to(boxes.device)

    x1, y1, x2, y2 = boxes.split(1, dim=-1)  # [n, 1] each
    w, h = x2 - x1 + 1, y2 - y1 + 1
    jx1 = x1 + w * uniform(-x_out, x_in)
    jy1 = y1 + h * uniform(-y_out, y_in)
    jx2 = x2 + w * uniform(-x_in, x_out)
    jy2 = y2 + h * uniform(-y_in, y_out)
    jx1 = jx1.clamp(min=0, max=width - 2)
    jy1 = jy1.clamp(min=0, max=height - 2)
    jx2 = torch.maximum(jx2.clamp(max=width - 1), jx1 + 1)
    jy2 = torch.maximum(jy2.clamp(max=height - 1), jy1 + 1)
    return _clip(torch.cat([jx1, jy1, jx2, jy2], dim=-1), height, width)  # [n, 4]


def extend_boxes(
    boxes: torch.Tensor,
    image_size: tuple[int, int],
    ext: float | tuple[float, float] = TEST_EXTEND,
) -> torch.Tensor:
    """The official test-time box extension (AlphAction ``BoxList.extend``).

    Each side moves outwards by ``ext_x * w / 2`` (x) and ``ext_y * h / 2`` (y) with
    ``w = x2 - x1 + 1``, ``h = y2 - y1 + 1`` (official ``(0.1, 0.05)``: the box grows by 10 % of
    its width and 5 % of its height), then every coordinate is clipped to ``[0, W - 1]`` /
    ``[0, H - 1]``; no box is removed (the official call discards ``clip_to_image``'s filtered
    result and keeps the clamped boxes).

    Args:
        boxes: ``[n, 4]`` pixels ``(x1, y1, x2, y2)``.
        image_size: ``(height, width)`` of the unpadded frame.
        ext: ``(ext_x, ext_y)``, or one number for both.

    Returns:
        ``[n, 4]`` float32.
    """
    boxes = _check_boxes(boxes)
    ext_x, ext_y = (ext, ext) if isinstance(ext, (int, float)) else (ext[0], ext[-1])
    height, width = image_size
    x1, y1, x2, y2 = boxes.unbind(-1)  # [n] each
    pad_w = float(ext_x) * (x2 - x1 + 1) / 2
    pad_h = float(ext_y) * (y2 - y1 + 1) / 2
    out = torch.stack([x1 - pad_w, y1 - pad_h, x2 + pad_w, y2 + pad_h], dim=-1)  # [n, 4]
    return _clip(out, height, width)


def _clip(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """AlphAction ``clip_to_image``: x in ``[0, W - 1]``, y in ``[0, H - 1]``. ``[n, 4]``."""
    x = boxes[:, 0::2].clamp(min=0, max=width - 1)  # [n, 2]
    y = boxes[:, 1::2].clamp(min=0, max=height - 1)  # [n, 2]
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=-1)  # [n, 4]


def sample_boxes(
    num_boxes: int, max_boxes: int = MAX_PROPOSALS, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Indices of the training proposals of one clip: all ``num_boxes`` in order when there
    are at most ``max_boxes`` (official 100), else a random ``max_boxes`` of them
    (``torch.randperm(n)[:max_boxes]``, official ``sample_box`` L309-322). Index the boxes and
    their labels with it. Returns ``[min(n, max_boxes)]`` int64 (CPU)."""
    if num_boxes <= max_boxes:
        return torch.arange(num_boxes)
    return torch.randperm(num_boxes, generator=generator)[:max_boxes]


# --------------------------------------------------------------------------- loss, scores
def detection_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The official training loss (``engine_for_finetuning.train_class_batch``, L22-32):
    ``binary_cross_entropy_with_logits(logits, targets, mean) * n`` — the per-box sum of the
    class-averaged BCE. ``logits [n, classes]``, ``targets [n, classes]`` multi-hot (or soft)
    -> scalar float32. No boxes give 0 (the official would give NaN)."""
    if logits.shape != targets.shape:
        raise InputError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    n = logits.shape[0]
    if n == 0:
        return logits.float().sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="mean")
    return loss * n


def detection_scores(logits: torch.Tensor, box_scores: torch.Tensor) -> torch.Tensor:
    """Test scores (official ``PostProcessor``, L139-165): ``sigmoid(logits) * box score``.
    ``logits [n, classes]``, ``box_scores [n]`` (the person detector's) -> ``[n, classes]``
    float32."""
    box_scores = box_scores.reshape(-1, 1).float()  # [n, 1]
    if box_scores.shape[0] != logits.shape[0]:
        raise InputError(f"{box_scores.shape[0]} box scores for {logits.shape[0]} boxes")
    return torch.sigmoid(logits.float()) * box_scores  # [n, classes]


# --------------------------------------------------------------------------- umt's format
def _describe(model: VideoDetector, cfg: dict[str, Any]) -> list[str]:
    return [
        "model: AVA action detector: video ViT + RoIAlign + classifier",
        f"sizes: width {model.embed_dim}, depth {len(model.blocks)}, heads "
        f"{model.blocks[0].attn.num_heads}, patch {model.patch_size}, tubelet {model.tubelet_size}",
        f"input: {model.num_frames} frames of {model.img_size}px; classes: {model.num_classes}",
    ]


# umt's format only (hub's generic loader); a detector starts from any other checkpoint with
# VideoDetector.load_backbone
register_family(
    Family(
        VideoDetector,
        "detector",
        _describe,
        foreign_hint=" is not a saved detector; start one from it with VideoDetector.load_backbone",
    )
)

# AVA v2.2 action detection (official ``AD/``): the student's encoder (no alignment heads) with
# its final norm, RoIAlign on the time-averaged features and an 80-way head, 8 frames, tubelet 1.
_AVA = dict(img_size=224, patch_size=16, num_frames=8, tubelet_size=1, num_classes=80)
register_model(
    "umt-b16-ava",
    VideoDetector,
    "UMT-B/16 AVA v2.2 action detector: 8x224 encoder + RoIAlign + 80-way head",
    **_AVA,
    embed_dim=768,
    depth=12,
    num_heads=12,
)
register_model(
    "umt-l16-ava",
    VideoDetector,
    "UMT-L/16 AVA v2.2 action detector: 8x224 encoder + RoIAlign + 80-way head",
    **_AVA,
    embed_dim=1024,
    depth=24,
    num_heads=16,
)
