"""An exponential moving average of the weights (``train.ema_decay``), as timm's ``ModelEma``:
a copy of the model made before the first step, then after every optimizer step
``ema = decay * ema + (1 - decay) * weights`` for every floating-point parameter and buffer
(integer buffers are copied)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from umt.train.compile import drop_compiled


class ModelEMA:
    """The averaged copy lives in ``self.module`` (eval mode, no gradients)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        # A compiled block's copy would still call the original's compiled forward (and its
        # weights): the copy runs eager.
        self.module = drop_compiled(copy.deepcopy(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights (same architecture)."""
        live = model.state_dict()
        floats_ema, floats_live = [], []
        for name, value in self.module.state_dict().items():
            if value.is_floating_point():
                floats_ema.append(value)
                floats_live.append(live[name].detach())
            else:
                value.copy_(live[name])
        if floats_ema:
            torch._foreach_lerp_(floats_ema, floats_live, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
