"""Time one full stage-1 training step: teacher forward, semantic mask, student forward and
backward on the kept tokens, AdamW step.

CPU (default): the fixed size of the issue on 2 threads -- batch 4, 8 frames of 112x112, patch 16,
student 384 wide x 12 deep x 6 heads, teacher 512 wide x 8 deep x 8 heads with 256-d output,
4 aligned layers, mask ratio 0.8, drop path 0.1.

GPU: ``--device cuda --preset umt-b16`` (batch 64, 8x224, CLIP-B/16 teacher, bf16 autocast) also
prints peak memory and model FLOPs utilisation against ``--peak-flops`` (default 989e12, H100
dense bf16).

Variants, timed in one process and interleaved (round i runs each in turn, so load changes fall
on all alike): ``umt`` (eager), ``official`` (``--impl both``), ``compiled`` (``--compile``: what
``train.compile=true`` does, the student's and the teacher's blocks compiled, on a copy of the
same weights; the JSON then carries dynamo's graph and graph-break counts) and ``matmul`` (an
N x N fp32 matrix product, the machine's matmul rate; each step's model FLOP/s is given as a
fraction of it).

The last line printed is a JSON object (``median_s``, ``mean_s``, ``steps``, ``device``, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics

import torch

from timing import compiled_ratios, interleaved, matmul_run, profile_top
from umt.models import create_model
from umt.train.compile import compile_blocks
from umt.train.optim import default_param_groups
from umt.train.step import train_step
from umt.train.tasks.stage1 import AlignedStudent, StepConfig, uma_loss_fn

PRESETS = {
    # name: (batch, frames, size, student kwargs, teacher name, teacher kwargs, K, align_dim)
    "cpu-fixed": dict(
        batch=4,
        frames=8,
        size=112,
        student=("umt-b16", dict(embed_dim=384, depth=12, num_heads=6, patch_size=16)),
        teacher=("clip-b16", dict(width=512, layers=8, heads=8, output_dim=256, patch_size=16)),
        K=4,
    ),
    "umt-b16": dict(
        batch=64, frames=8, size=224, student=("umt-b16", {}), teacher=("clip-b16", {}), K=6
    ),
    "umt-l16": dict(
        batch=32, frames=8, size=224, student=("umt-l16", {}), teacher=("clip-l14", {}), K=6
    ),
}


def vit_flops(tokens: int, width: int, depth: int, mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs (2 per multiply-add) of ``depth`` ViT blocks over ``tokens`` tokens."""
    dense = 2 * tokens * width * width * (4 + 2 * mlp_ratio)  # qkv, proj, mlp
    attn = 2 * 2 * tokens * tokens * width  # q @ k^T and attn @ v
    return depth * (dense + attn)


def step_flops(student, teacher, batch: int, frames: int, size: int, ratio: float) -> float:
    """Model FLOPs of one step: teacher forward on every token + 3 x student forward on the kept
    tokens (forward + backward), patch embeddings and heads included."""
    tp = teacher.patch_size
    hw_t = (size // tp) ** 2
    t_layers = max(teacher.return_indices) + 1
    f = batch * frames * vit_flops(hw_t + 1, teacher.width, t_layers)
    f += batch * frames * 2 * hw_t * teacher.width * 3 * tp * tp
    hw = student.num_patches_per_frame
    kept = frames * (hw - int(hw * ratio))
    C = student.embed_dim
    K = len(student.align_indices)
    f += batch * kept * K * 2 * teacher.width * teacher.output_dim  # teacher projections
    sp = size // int(hw**0.5)
    s = batch * vit_flops(
        kept,
        C,
        len(student.blocks),
        student.blocks[0].mlp_ratio if hasattr(student.blocks[0], "mlp_ratio") else 4.0,
    )
    s += batch * frames * hw * 2 * C * 3 * sp * sp  # patch embedding (all tokens)
    s += batch * kept * K * 2 * C * teacher.output_dim  # alignment heads
    return f + 3 * s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default=None, choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time the step with train.compile's compiled blocks (student and teacher), "
        "on a copy of the same weights, interleaved with the others",
    )
    ap.add_argument(
        "--no-fused", dest="fused", action="store_false", help="foreach AdamW instead of fused"
    )
    ap.add_argument("--peak-flops", type=float, default=989e12, help="peak bf16 FLOP/s")
    ap.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="autocast dtype; auto: bf16 on GPU, fp32 on CPU (bf16 is fast on AMX CPUs too)",
    )
    ap.add_argument("--mask-ratio", type=float, default=0.8)
    ap.add_argument("--drop-path", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=None, help="override the preset's batch")
    ap.add_argument(
        "--impl",
        choices=["umt", "official", "both"],
        default="umt",
        help="umt: this library's step; official: the official code's computation pattern "
        "(benchmarks/official_style.py) on the same models, for a same-machine baseline",
    )
    ap.add_argument(
        "--matmul",
        type=int,
        default=1024,
        help="also time an N x N fp32 matmul in the same rounds (the machine's matmul rate; "
        "0: off; default 1024)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="after timing, profile two steps of each variant (torch.profiler): the top ops by "
        "self time go in the JSON (profile_<variant>)",
    )
    args = ap.parse_args()

    device = torch.device(args.device)
    preset_name = args.preset or ("cpu-fixed" if device.type == "cpu" else "umt-b16")
    p = dict(PRESETS[preset_name])
    if args.batch:
        p["batch"] = args.batch
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    prec = args.precision
    if prec == "auto":
        prec = "bf16" if device.type == "cuda" else "fp32"  # CPU: the same numbers as fp32 code
    amp = torch.bfloat16 if prec == "bf16" else None
    torch.manual_seed(0)

    s_name, s_kw = p["student"]
    t_name, t_kw = p["teacher"]
    teacher = create_model(
        t_name, img_size=p["size"] if t_name != "clip-l14" else 196, return_layers=p["K"], **t_kw
    ).to(device)
    student = create_model(
        s_name,
        img_size=p["size"],
        num_frames=p["frames"],
        drop_path_rate=args.drop_path,
        align_layers=p["K"],
        align_dim=teacher.output_dim,
        **s_kw,
    ).to(device)
    cfg = StepConfig(
        mask_ratio=args.mask_ratio, teacher_img_size=196 if t_name == "clip-l14" else None
    )
    B, T, S = p["batch"], p["frames"], p["size"]
    g = torch.Generator().manual_seed(0)
    video = torch.randn(B, 3, T, S, S, generator=g).to(device)

    def adamw(module: torch.nn.Module, fused: bool) -> torch.optim.AdamW:
        return torch.optim.AdamW(
            default_param_groups(module, 0.05), lr=1e-4, betas=(0.9, 0.95),
            **({"fused": True} if fused else {}),
        )  # fmt: skip

    def umt_run(net: torch.nn.Module, teach: torch.nn.Module):
        opt, loss_fn = adamw(net, args.fused), uma_loss_fn(teach, cfg)

        def run_one(i: int) -> None:
            seeds = list(range(i * B, (i + 1) * B))
            train_step(net, opt, [(video, seeds)], loss_fn, amp_dtype=amp)

        return run_one

    # Every variant on its own copy of the same weights (the official pattern patches modules).
    runs = {}
    if args.impl in ("official", "both"):
        from official_style import make_official_student, official_step

        ref_student = make_official_student(copy.deepcopy(student))
        ref_teacher, ref_opt = copy.deepcopy(teacher), adamw(ref_student, False)
        ref_amp = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()

        def run_official(i: int) -> None:
            with ref_amp:
                official_step(ref_student, ref_teacher, ref_opt, video, args.mask_ratio)

        runs["official"] = run_official
    if args.compile:
        c_student, c_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
        c_model = AlignedStudent(c_student)
        compile_blocks([c_model, c_teacher])  # what train.compile=true does in the loop
        runs["compiled"] = umt_run(c_model, c_teacher)
    if args.impl in ("umt", "both"):
        runs["umt"] = umt_run(AlignedStudent(student), teacher)
    mm_flops = 0.0
    if args.matmul:
        runs["matmul"], mm_flops = matmul_run(device, args.matmul)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = interleaved(runs, args.steps, args.warmup, device)
    med = {name: statistics.median(t) for name, t in times.items()}
    flops = step_flops(student, teacher, B, T, S, args.mask_ratio)
    main_name = "umt" if "umt" in med else "compiled" if "compiled" in med else "official"
    res = {
        "median_s": round(med[main_name], 4),
        "mean_s": round(statistics.fmean(times[main_name]), 4),
        "min_s": round(min(times[main_name]), 4),
        "steps": len(times[main_name]),
        "clips_per_s": round(B / med[main_name], 2),
        "impl": main_name,
        "preset": preset_name,
        "batch": B,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__,
        "compile": args.compile,
        "precision": prec,
        "fused_adamw": args.fused,
        "model_tflops_per_step": round(flops / 1e12, 4),
    }
    if "official" in med:
        res["official_style_median_s"] = round(med["official"], 4)
        if main_name != "official":
            res["speedup_vs_official_style"] = round(med["official"] / med[main_name], 2)
    res.update(compiled_ratios(med, "official_style"))
    if "compiled" in med:
        res["compiled_clips_per_s"] = round(B / med["compiled"], 2)
    if "matmul" in med:
        rate = mm_flops / med["matmul"]
        res["matmul_gflops"] = round(rate / 1e9, 1)
        for name in ("umt", "compiled", "official"):
            if name in med:  # the step's model FLOP/s as a fraction of the matmul rate
                res[f"{name}_vs_matmul_rate"] = round(flops / med[name] / rate, 3)
    if device.type == "cuda":
        res["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        for name in ("umt", "compiled", "official"):
            if name in med:
                res[f"{name}_mfu"] = round(flops / med[name] / args.peak_flops, 4)
        res["mfu"] = res[f"{main_name}_mfu"]
        res["peak_flops"] = args.peak_flops
    if args.profile:
        for name, run_one in runs.items():
            if name != "matmul":
                res[f"profile_{name}"] = profile_top(run_one, device)
    for name, m in med.items():
        if name != "matmul":
            print(f"{preset_name} {name}: median {m:.3f}s/step, {B / m:.1f} clips/s "
                  f"over {len(times[name])} steps")  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
