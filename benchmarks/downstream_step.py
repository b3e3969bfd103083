"""Time one training step of each downstream task: open-ended video QA, multiple choice
(MSRVTT-MC trains as retrieval: VTC + VTM) and AVA action detection.

Each step is what the trainer runs: the task's train module (QA: :class:`umt.train.tasks.video_qa.
QATrainModule`; MC: :class:`umt.train.tasks.video_text.VideoTextTrainModule` with the MC recipe's
losses; AVA: :class:`umt.models.detection.VideoDetector` + :func:`umt.models.detection.
detection_loss` on jittered boxes) under :func:`umt.train.step.train_step` with fused AdamW over
the default parameter groups. Random weights and inputs; nothing is downloaded or decoded.

CPU (default, 2 threads): a fixed small size -- batch 8, 4 frames of 112 px, video encoder 192
wide x 4 deep x 3 heads; QA and MC with a MiniLM-L6-sized text tower (384 wide, 6 layers, 12
heads, vocabulary 30522, cross-attention from layer 4; the QA answer decoder has 2 layers),
questions of 16 tokens with 2 answers of 5 tokens each, MC captions of 32 tokens; AVA with 2
boxes per clip and 80 classes.

GPU: ``--device cuda --preset umt-b16``: UMT-B/16 with BERT-base (fusion from layer 9, QA decoder
3 layers), 12 frames of 224 px, batch 32 (QA: questions of 25 tokens, answers of 5; MC captions
of 32), AVA 8 frames of 224 px, batch 8 with 4 boxes per clip; bf16 or fp16 autocast.

One JSON line per task (``task``, ``median_s``, ``items_per_s``, ``preset``, ``device``,
``precision``, ``params_m``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics

import torch

from timing import timed as timed_calls
from umt.config import load_config
from umt.models import model_config
from umt.models.detection import VideoDetector, detection_loss, jitter_boxes
from umt.models.video_qa import UMTVideoQA
from umt.models.video_text import UMTVideoText
from umt.train.optim import build_optimizer
from umt.train.step import train_step
from umt.train.tasks.video_qa import QATrainModule
from umt.train.tasks.video_text import VideoTextTrainModule

SPECIAL = {"pad": 0, "cls": 101, "sep": 102, "mask": 103}
MINILM = dict(
    vocab_size=30522,
    hidden_size=384,
    num_layers=6,
    num_heads=12,
    intermediate_size=1536,
    fusion_layer=4,
    dropout=0.1,
    attention_dropout=0.1,
)


def _tiny_vision(frames: int, size: int) -> dict:
    return dict(
        img_size=size,
        patch_size=16,
        num_frames=frames,
        tubelet_size=1,
        embed_dim=192,
        depth=4,
        num_heads=3,
        drop_path_rate=0.1,
        align_layers=0,
    )


def _b16_vision(frames: int) -> dict:
    cfg = model_config("umt-b16-vt")["vision"]
    return {**cfg, "num_frames": frames, "align_layers": 0, "drop_path_rate": 0.2}


PRESETS = {
    "cpu-fixed": lambda: dict(
        batch=8,
        frames=4,
        size=112,
        vision=_tiny_vision(4, 112),
        text=dict(MINILM),
        q_len=16,
        caption_len=32,
        ava_batch=8,
        ava_frames=4,
        ava_boxes=2,
        ava_vision=dict(embed_dim=192, depth=4, num_heads=3),
    ),
    "umt-b16": lambda: dict(
        batch=32,
        frames=12,
        size=224,
        vision=_b16_vision(12),
        text={**model_config("umt-b16-vt")["text"], "dropout": 0.1},
        q_len=25,
        caption_len=32,
        ava_batch=8,
        ava_frames=8,
        ava_boxes=4,
        ava_vision=dict(embed_dim=768, depth=12, num_heads=12),
    ),
}


def _tokens(n: int, length: int, g: torch.Generator, lo: int = 1000) -> torch.Tensor:
    ids = torch.randint(lo, 30000, (n, length), generator=g)
    ids[:, 0] = SPECIAL["cls"]
    ids[:, -1] = SPECIAL["sep"]
    return ids


def qa_step(p: dict, device, g) -> tuple[torch.nn.Module, tuple, int]:
    text = {k: v for k, v in p["text"].items() if k != "mlm_head"}
    vt = UMTVideoText(p["vision"], text, embed_dim=256)
    qa, _ = UMTVideoQA.from_video_text(vt)
    module = QATrainModule(qa, SPECIAL["pad"]).to(device)
    b = p["batch"]
    video = torch.randn(b, 3, p["frames"], p["size"], p["size"], generator=g)
    q = _tokens(b, p["q_len"], g)
    counts = torch.full((b,), 2, dtype=torch.long)
    a = _tokens(2 * b, 5, g)
    a[:, 3] = SPECIAL["sep"]  # [CLS] x y [SEP] [SEP]
    weights = torch.full((2 * b,), 0.5)
    micro = tuple(
        x.to(device) for x in (video, q, torch.ones_like(q), a, torch.ones_like(a), counts, weights)
    )
    return module, micro, b


def mc_step(p: dict, device, g) -> tuple[torch.nn.Module, tuple, int]:
    cfg = load_config("umt-tiny-synthetic-mc", [f"text.max_length={p['caption_len']}"])
    model = UMTVideoText(p["vision"], {**p["text"], "mlm_head": False}, embed_dim=256)
    module = VideoTextTrainModule(model, cfg, SPECIAL).to(device)
    b = p["batch"]
    video = torch.randn(b, 3, p["frames"], p["size"], p["size"], generator=g)
    ids = _tokens(b, p["caption_len"], g)
    micro = (
        video.to(device),
        ids.to(device),
        torch.ones_like(ids).to(device),
        torch.arange(b, device=device),
        False,
        list(range(b)),
        0,
    )
    return module, micro, b


class _DetectionModule(torch.nn.Module):
    def __init__(self, net: VideoDetector) -> None:
        super().__init__()
        self.net = net

    def forward(self, video, boxes, targets):
        return detection_loss(self.net(video, boxes).float(), targets)


def ava_step(p: dict, device, g) -> tuple[torch.nn.Module, tuple, int]:
    size = p["size"]
    net = VideoDetector(
        img_size=size,
        num_frames=p["ava_frames"],
        num_classes=80,
        drop_path_rate=0.2,
        **p["ava_vision"],
    )
    module = _DetectionModule(net).to(device)
    b, n = p["ava_batch"], p["ava_boxes"]
    video = torch.randn(b, 3, p["ava_frames"], size, size, generator=g)
    boxes = []
    for _ in range(b):
        xy = torch.rand(n, 2, generator=g) * size * 0.5
        wh = torch.rand(n, 2, generator=g) * size * 0.4 + size * 0.1
        raw = torch.cat([xy, xy + wh], 1)
        boxes.append(jitter_boxes(raw, (size, size), g).to(device))
    targets = (torch.rand(b * n, 80, generator=g) < 0.05).float()
    return module, (video.to(device), boxes, targets.to(device)), b


TASKS = {"qa": qa_step, "mc": mc_step, "ava": ava_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=[*TASKS, "all"], default="all")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default=None, choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    args = ap.parse_args()
    device = torch.device(args.device)
    preset = args.preset or ("cpu-fixed" if device.type == "cpu" else "umt-b16")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    prec = args.precision
    if prec == "auto":
        prec = "bf16" if device.type == "cuda" else "fp32"
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
    p = PRESETS[preset]()
    for task in TASKS if args.task == "all" else [args.task]:
        res = time_task(task, p, device, amp, args.steps, args.warmup)
        res.update(preset=preset, device=str(device), precision=prec)
        res["threads"] = args.threads if device.type == "cpu" else None
        print(f"{task}: median {res['median_s']:.3f}s/step, {res['items_per_s']:.1f} items/s "
              f"({preset}, {prec})")  # fmt: skip
        print(json.dumps(res), flush=True)


def time_task(task: str, p: dict, device, amp, steps: int, warmup: int) -> dict:
    """Median seconds of ``steps`` training steps of ``task`` after ``warmup`` ones."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    module, micro, items = TASKS[task](p, device, g)
    module.train()
    opt = build_optimizer(module, load_config("umt-tiny-synthetic-mc"), lr=1e-5)  # fused AdamW
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext

    def loss_fn(net, mb):
        with autocast():
            out = net(*mb)
        return out["loss"] if isinstance(out, dict) else out

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = timed_calls(
        lambda i: train_step(module, opt, [micro], loss_fn, None, scaler), steps, warmup, device
    )
    med = statistics.median(times)
    res = {
        "task": task,
        "median_s": round(med, 4),
        "mean_s": round(statistics.fmean(times), 4),
        "items_per_s": round(items / med, 2),
        "batch": items,
        "params_m": round(sum(q.numel() for q in module.parameters()) / 1e6, 2),
    }
    if device.type == "cuda":
        res["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return res


if __name__ == "__main__":
    main()
