"""Stage-1 (Unmasked Teacher) pretraining.

``step`` (one training step), ``optim`` (AdamW groups, cosine schedules), ``distributed``
(process groups, DDP / FSDP2, resumable sampler), ``checkpoint`` (atomic, pickle-free
checkpoints), ``trainer`` (the loop behind ``umt pretrain``), ``visualize`` (``umt
visualize-mask``). The library (models, masking, losses, data) never imports this package.
"""

from umt.train.trainer import RunResult, pretrain

__all__ = ["RunResult", "pretrain"]
