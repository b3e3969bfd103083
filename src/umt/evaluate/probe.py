"""What a pretrained video encoder learnt, without fine-tuning it: frozen features -> k-NN and a
linear probe.

Features (:func:`clip_features`): the encoder's output tokens on whole clips (no mask), read two
ways: what the clip shows (the mean of every token, ``[B, C]``) and where things go (the tokens
averaged in a 2 x 2 grid of each frame, the later half of the clip's time steps minus the earlier
half, ``[B, 4C]``). A plain mean over space keeps no trace of where the actor is, so a probe on
it cannot read a motion's direction, which half of every class of the built-in world is. Both
probes fit on one split and score on another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from umt.errors import InputError

__all__ = [
    "ProbeResult",
    "clip_features",
    "extract_features",
    "knn_accuracy",
    "linear_probe_accuracy",
    "probe_encoder",
]


@dataclass
class ProbeResult:
    """Accuracies (fractions) of the two probes and what they were measured on."""

    linear_acc: float
    knn_acc: float
    num_train: int
    num_val: int
    num_classes: int
    feature_dim: int

    @property
    def chance(self) -> float:
        return 1.0 / self.num_classes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DISPLACEMENT_GRID = 2  # the displacement part's cells per side of a frame


def clip_features(encoder: nn.Module, video: torch.Tensor) -> torch.Tensor:
    """``[B, 3, T, H, W] -> [B, C + 4C]``: appearance and displacement of the final features.

    Appearance: the mean of all ``T' x H' x W'`` output tokens ``[B, C]``. Displacement: the
    tokens averaged in a ``2 x 2`` grid of each time step (``adaptive_avg_pool2d``), the mean
    over the later ``T' // 2`` steps minus the mean over the earlier ``T' // 2`` (a middle step
    of an odd count in neither), ``[B, 4C]``. A clip of one time step has appearance only.
    """
    tokens = encoder.forward_features(video).float()  # [B, T'*H'*W', C]
    b, _, c = tokens.shape
    steps, h, w = encoder.grid
    appearance = tokens.mean(1)  # [B, C]
    half = steps // 2
    if half == 0:
        return appearance
    frames = tokens.reshape(b * steps, h, w, c).permute(0, 3, 1, 2)  # [B*T', C, H', W']
    cells = F.adaptive_avg_pool2d(frames, DISPLACEMENT_GRID).reshape(b, steps, -1)  # [B, T', 4C]
    displacement = cells[:, steps - half :].mean(1) - cells[:, :half].mean(1)  # [B, 4C]
    return torch.cat([appearance, displacement], dim=1)


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    dataset: torch.utils.data.Dataset,
    batch_size: int = 16,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of every clip of ``dataset`` (items with ``video`` and ``label``;
    unreadable clips are skipped by the dataset's collate): ``([N, D], [N])`` on the CPU."""
    from umt.data import collate_videos
    from umt.utils.device import maybe_autocast

    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_videos
    )
    feats, labels = [], []
    try:
        for batch in loader:
            if batch["video"] is None:  # no clip of this batch readable (named in "faults")
                continue
            video = batch["video"].to(device)
            with maybe_autocast(device, autocast_dtype):
                f = clip_features(encoder, video)
            feats.append(f.cpu())
            labels.append(batch["label"].cpu())
    finally:
        encoder.train(was_training)
    if not feats:
        raise InputError("probe: no readable clip to extract features from")
    return torch.cat(feats), torch.cat(labels)


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 10,
    num_classes: int | None = None,
) -> float:
    """Cosine k-NN on standardised features; each of the ``k`` nearest training clips votes for
    its class with weight ``exp(cos / 0.07)`` (the DINO / InstDisc form). Ties go to the lower
    class index."""
    train_x, test_x = _standardise(train_x.double(), test_x.double())
    train_x, test_x = F.normalize(train_x, dim=1), F.normalize(test_x, dim=1)
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(train_x))
    sim = test_x @ train_x.T  # [N_test, N_train]
    top, idx = sim.topk(k, dim=1)  # [N_test, k]
    votes = torch.zeros(len(test_x), num_classes, dtype=torch.float64)
    votes.scatter_add_(1, train_y[idx], (top / 0.07).exp())
    return (votes.argmax(1) == test_y).double().mean().item()


def linear_probe_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    epochs: int = 200,
    weight_decay: float = 1e-3,
    num_classes: int | None = None,
) -> float:
    """Multinomial logistic regression on standardised features, fitted full-batch with L-BFGS
    (deterministic: no sampling) with an L2 penalty ``weight_decay / 2 * |W|^2``."""
    train_x, test_x = _standardise(train_x.double(), test_x.double())
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    head = nn.Linear(train_x.shape[1], num_classes).double()
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(
        head.parameters(), lr=1.0, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(train_x), train_y)
        loss = loss + 0.5 * weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return (head(test_x).argmax(1) == test_y).double().mean().item()


def probe_encoder(
    encoder: nn.Module,
    train_set: torch.utils.data.Dataset,
    val_set: torch.utils.data.Dataset,
    num_classes: int,
    k: int = 10,
    epochs: int = 200,
    weight_decay: float = 1e-3,
    batch_size: int = 16,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> ProbeResult:
    """Both probes of ``encoder`` (a ``VideoViT``), fitted on ``train_set``, scored on
    ``val_set``."""
    kw = dict(
        batch_size=batch_size, num_workers=num_workers, device=device, autocast_dtype=autocast_dtype
    )
    train_x, train_y = extract_features(encoder, train_set, **kw)
    val_x, val_y = extract_features(encoder, val_set, **kw)
    return ProbeResult(
        linear_acc=linear_probe_accuracy(
            train_x, train_y, val_x, val_y, epochs, weight_decay, num_classes
        ),
        knn_acc=knn_accuracy(train_x, train_y, val_x, val_y, k, num_classes),
        num_train=len(train_x),
        num_val=len(val_x),
        num_classes=num_classes,
        feature_dim=train_x.shape[1],
    )
