"""The loop's validation component (umt.train.validate): eval mode and its restore, no
gradients, the run's autocast around each batch, a per-batch or a whole-set protocol."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from umt.config import load_config
from umt.train.distributed import DistInfo
from umt.train.tasks.base import RunContext, Task
from umt.train.validate import evaluating, validate


class ToyTask(Task):
    """Sums of a linear layer's outputs over a 5-item set, batches of 2, as a per-batch
    protocol; records what each step saw."""

    def __init__(self, amp: torch.dtype | None = None, whole_set: bool = False) -> None:
        super().__init__(load_config(None, ["train.batch_size=2"]), RunContext(DistInfo(), amp))
        self.whole_set = whole_set
        self.seen: list[tuple[bool, bool, bool]] = []  # (training, grad enabled, autocast on)

    def collate(self) -> Any:
        return lambda items: {"x": torch.stack(items)}

    def eval_dataset(self) -> Any:
        return None if self.whole_set else list(torch.arange(10.0).view(5, 2))

    def _note(self, model: nn.Module) -> None:
        self.seen.append(
            (model.training, torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"))
        )

    def eval_step(self, model: nn.Module, batch: dict[str, Any]) -> tuple[float, int]:
        self._note(model)
        return float(model(batch["x"]).float().sum()), batch["x"].shape[0]

    def eval_metrics(self, parts: list[tuple[float, int]]) -> dict[str, Any]:
        return {"total": sum(p[0] for p in parts), "items": sum(p[1] for p in parts)}

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, Any]:
        self._note(model)
        return {"epoch": epoch}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5)).train()


def test_per_batch_protocol_in_eval_mode_without_grad_then_restored():
    model, task = _model(), ToyTask()
    metrics = validate(task, model, epoch=0)
    with torch.no_grad():
        want = float(model.eval()(torch.arange(10.0).view(5, 2)).sum())
    assert metrics["items"] == 5 and abs(metrics["total"] - want) < 1e-4
    assert task.seen == [(False, False, False)] * 3  # batches of 2, 2, 1
    model.train()
    validate(task, model, epoch=1)
    assert model.training  # restored


def test_whole_set_protocol_and_the_runs_autocast_per_batch():
    model, task = _model(), ToyTask(whole_set=True)
    assert validate(task, model, epoch=3) == {"epoch": 3}
    assert task.seen == [(False, False, False)] and model.training
    bf16 = ToyTask(amp=torch.bfloat16)
    validate(bf16, model, epoch=0)
    assert bf16.seen == [(False, False, True)] * 3  # the loop's autocast, per batch


def test_evaluating_restores_the_mode_after_an_error():
    model = _model()
    try:
        with evaluating(model):
            assert not model.training
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert model.training
