"""Time one classification fine-tuning step and the evaluation throughput.

Step: mixup / cutmix soft targets -> classifier forward (all tokens) -> soft-target cross-entropy
-> backward -> AdamW over layer-decay groups, as ``umt finetune`` runs it (``train_step`` with
the task's loss). Beside it, in the same run, an official-style step on the same weights and
data: explicit ``softmax(q k^T) v`` attention (the official model has no fused kernel) and the
for-loop AdamW (``--impl both``); with ``--compile`` a third, what ``train.compile=true`` does
(each block compiled) on another copy. The steps are timed in one process, interleaved (round i
runs each variant in turn).

Evaluation: forward throughput of the classifier in clips/s (views of the multi-view test) under
``torch.no_grad``, ours and official-style; with ``--decode`` also the whole ``umt evaluate``
pipeline (decode, resize, crops, forward) on the built-in synthetic set's val split.

CPU (default): a fixed size on 2 threads -- 4 videos x 2 clips (num_sample), 8 frames of
112x112, patch 16, 384 wide x 12 deep x 6 heads, 400 classes. GPU: ``--device cuda --preset
umt-b16`` (16 videos x 2 clips, 8 x 224, UMT-B/16, bf16).

The last line printed is a JSON object (``median_s``, ``clips_per_s``, ``eval_clips_per_s``, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time

import torch

from timing import compiled_ratios, interleaved, profile_top
from timing import timed as timed_calls
from umt.data.transforms.mixup import Mixup
from umt.losses import soft_target_cross_entropy
from umt.models import create_model
from umt.train.compile import compile_blocks
from umt.train.optim import layer_decay_param_groups
from umt.train.step import train_step

PRESETS = {
    "cpu-fixed": dict(
        videos=4,
        num_sample=2,
        frames=8,
        size=112,
        classes=400,
        model=dict(embed_dim=384, depth=12, num_heads=6, patch_size=16),
    ),  # fmt: skip
    "umt-b16": dict(videos=16, num_sample=2, frames=8, size=224, classes=400, model={}),
    "umt-l16": dict(videos=8, num_sample=2, frames=8, size=224, classes=400, model={}),
}


def _optimizer(model: torch.nn.Module, fused: bool) -> torch.optim.AdamW:
    groups = layer_decay_param_groups(model, 0.05, 0.75)
    for g in groups:
        g.pop("names", None)
        g.pop("layer_id", None)
    return torch.optim.AdamW(
        groups, lr=1e-4, betas=(0.9, 0.999), **({"fused": True} if fused else {})
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    p.add_argument("--impl", choices=["umt", "official", "both"], default="both")
    p.add_argument("--decode", action="store_true", help="also time the whole evaluate pipeline")
    p.add_argument("--videos", type=int, default=None, help="override the preset's videos")
    p.add_argument("--grad-checkpointing", type=int, default=0,
                   help="recompute the first N blocks in the backward (as the recipes)")  # fmt: skip
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time the step with train.compile's compiled blocks on a copy of the weights",
    )
    p.add_argument(
        "--profile", action="store_true",
        help="profile two steps of each variant after timing: top ops in the JSON",
    )  # fmt: skip
    args = p.parse_args()

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    preset = args.preset or ("umt-b16" if device.type == "cuda" else "cpu-fixed")
    cfg = dict(PRESETS[preset])
    if args.videos:
        cfg["videos"] = args.videos
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    if args.precision == "auto":
        amp = torch.bfloat16 if device.type == "cuda" else None
    name = "umt-l16" if preset == "umt-l16" else "umt-b16"
    torch.manual_seed(0)
    model = create_model(
        name, img_size=cfg["size"], num_frames=cfg["frames"], num_classes=cfg["classes"],
        align_layers=0, final_norm=False, drop_path_rate=0.1, **cfg["model"],
    ).to(device)  # fmt: skip
    if args.grad_checkpointing:  # as the recipes set model.grad_checkpointing
        model.set_grad_checkpointing(args.grad_checkpointing)
    clips = cfg["videos"] * cfg["num_sample"]
    g = torch.Generator().manual_seed(0)
    video = torch.randn(clips, 3, cfg["frames"], cfg["size"], cfg["size"], generator=g).to(device)
    labels = torch.randint(0, cfg["classes"], (clips,), generator=g).to(device)
    mixup = Mixup(cfg["classes"])
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext

    def loss_fn(net: torch.nn.Module, micro: tuple[torch.Tensor, torch.Tensor, int]):
        x, y, seed = micro
        x, target = mixup(x, y, generator=torch.Generator().manual_seed(seed))
        with autocast():
            logits = net(x)
        return soft_target_cross_entropy(logits.float(), target)

    def eval_rate(net: torch.nn.Module) -> float:
        net.eval()
        with torch.no_grad(), autocast():
            times = timed_calls(lambda i: net(video), args.steps, args.warmup, device)
        net.train()
        return clips / statistics.median(times)

    def step_run(net: torch.nn.Module, fused: bool):
        opt = _optimizer(net, fused=fused)
        return lambda i: train_step(net, opt, [(video, labels, i)], loss_fn, None, scaler)

    res: dict[str, object] = {"preset": preset, "device": str(device), "clips": clips}
    runs, ref = {}, None
    if args.impl in ("official", "both"):
        from official_style import make_official_student

        ref = make_official_student(copy.deepcopy(model))
        runs["official"] = step_run(ref, fused=False)
    if args.compile:
        compiled = copy.deepcopy(model)
        compile_blocks([compiled])  # what train.compile=true does in the loop
        runs["compiled"] = step_run(compiled, fused=True)
    if args.impl in ("umt", "both"):
        runs["umt"] = step_run(model, fused=True)
    times = interleaved(runs, args.steps, args.warmup, device)
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, m in med.items():
        print(f"{name}: step {m:.3f}s ({clips / m:.1f} clips/s)")
    if ref is not None:
        res["official_style_median_s"] = round(med["official"], 4)
        res["official_style_eval_clips_per_s"] = round(eval_rate(ref), 2)
        print(f"official-style: eval {res['official_style_eval_clips_per_s']} clips/s")
    main_name = "umt" if "umt" in med else "compiled" if "compiled" in med else "official"
    if main_name == "official":
        print(json.dumps(res))
        return
    med_s = med[main_name]
    res.update(
        median_s=round(med_s, 4),
        mean_s=round(statistics.mean(times[main_name]), 4),
        steps=len(times[main_name]),
        clips_per_s=round(clips / med_s, 2),
        impl=main_name,
        compile=args.compile,
        eval_clips_per_s=round(eval_rate(model), 2),
        precision=str(amp).replace("torch.", "") if amp else "fp32",
    )
    if "official_style_median_s" in res:
        res["speedup_vs_official_style"] = round(res["official_style_median_s"] / med_s, 2)
    res.update(compiled_ratios(med, "official_style"))
    if args.profile:
        for name, run_one in runs.items():
            res[f"profile_{name}"] = profile_top(run_one, device)
    if device.type == "cuda":
        res["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(f"umt: eval {res['eval_clips_per_s']} clips/s")
    if args.decode:
        res["evaluate_pipeline_clips_per_s"] = round(_pipeline_rate(model, amp), 2)
        print(
            f"evaluate pipeline (decode + views + forward): {res['evaluate_pipeline_clips_per_s']} clips/s"
        )
    print(json.dumps(res))


def _pipeline_rate(model: torch.nn.Module, amp: torch.dtype | None) -> float:
    """Views per second through ``evaluate_classification`` on the synthetic val split (the
    model is rebuilt for the synthetic set's 4 frames of 112 px, 12 classes)."""
    import tempfile

    from umt.data import ensure_synthetic_dataset
    from umt.data.clip_spec import ClipSpec
    from umt.data.datasets import MultiViewDataset
    from umt.evaluate.classification import evaluate_classification

    root = ensure_synthetic_dataset(tempfile.mkdtemp(prefix="umt-bench-") + "/synthetic")
    net = create_model(
        "umt-b16", img_size=112, num_frames=4, num_classes=12, align_layers=0, final_norm=False,
        embed_dim=model.embed_dim, depth=len(model.blocks), num_heads=model.blocks[0].attn.num_heads,
    ).to(next(model.parameters()).device)  # fmt: skip
    clip = ClipSpec(num_frames=4, input_size=112, num_clips=2, num_crops=3)
    ds = MultiViewDataset(root / "val.csv", clip=clip, normalize=False)
    t0 = time.perf_counter()
    result = evaluate_classification(net, ds, batch_size=4, num_workers=2, progress=False,
                                     autocast_dtype=amp)  # fmt: skip
    return result.num_videos * result.num_views / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
