"""Person boxes under the detection transforms: AlphAction's resize size, normalised -> pixel
boxes, crop and flip of inclusive pixel boxes ``[n, 4]`` (``x1, y1, x2, y2``)."""

from __future__ import annotations

import torch

__all__ = [
    "crop_boxes",
    "flip_boxes",
    "normalised_to_pixels",
    "resize_size",
]


def resize_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """AlphAction ``Resize.get_size``: ``(height, width)`` with the short side ``short_side``
    and the long side ``int(short_side * long / short)``."""
    if min(height, width) == short_side:
        return height, width
    if width < height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


def normalised_to_pixels(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised ``[n, 4]`` -> inclusive pixels of a ``height x width`` frame."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    px = boxes.float() * scale
    px[:, 2:] -= 1.0
    px[:, 2] = torch.maximum(px[:, 2], px[:, 0])
    px[:, 3] = torch.maximum(px[:, 3], px[:, 1])
    return px


def crop_boxes(
    boxes: torch.Tensor, x0: int, y0: int, size_h: int, size_w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of a crop at ``(x0, y0)`` of ``size_h x size_w``: shifted, clipped to
    ``[0, size - 1]``; returns ``(boxes [m, 4], kept [n] bool)``, dropping the boxes that lie
    outside the crop (nothing left after clipping: ``x2 <= x1`` or ``y2 <= y1``)."""
    b = boxes.float() - torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
    b[:, 0::2] = b[:, 0::2].clamp(0, size_w - 1)
    b[:, 1::2] = b[:, 1::2].clamp(0, size_h - 1)
    kept = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return b[kept], kept


def flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Horizontal flip of inclusive pixel boxes (AlphAction ``transpose``: ``x1' = W - 1 - x2``,
    ``x2' = W - 1 - x1``)."""
    b = boxes.clone()
    b[:, 0] = width - 1 - boxes[:, 2]
    b[:, 2] = width - 1 - boxes[:, 0]
    return b
