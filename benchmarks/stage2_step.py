"""Time one full stage-2 (video-text) training step: teacher forward and semantic mask, student on
the kept tokens (UMA), text layers, VTC, VTM with hard negatives, MLM, backward, AdamW step.

The umt step is what the trainer runs: :class:`umt.train.tasks.video_text.VideoTextTrainModule`
(loss settings of the ``umt-tiny-synthetic-stage2`` recipe: all four losses, MLM probability
0.5, hard negatives; the video mask ratio of the official recipe ``umt-b16-5m``, 0.8, which
the official-style step uses too, where the tiny recipe trains at 0.5) under
:func:`umt.train.step.train_step`, fused AdamW over :func:`umt.train.optim.default_param_groups`.
Random weights; nothing is downloaded.

CPU (default): a fixed small size on 2 threads -- batch 8, 4 frames of 112 px, video encoder
192 wide x 4 deep x 3 heads (patch 16), teacher 128 wide x 4 layers x 4 heads (output 128,
K = 2), a MiniLM-L6-sized text tower (384 wide, 6 layers, 12 heads, FFN 1536, vocabulary 30522,
cross-attention from layer 4), captions of 32 tokens.

``--impl both`` (the CPU default) also times an official-style step on a copy of the same
weights (``benchmarks/official_style_stage2.py``: explicit attention matrices, the teacher on
every token, ``torch.multinomial`` masking, ...). Before timing, both compute the loss parts of
one batch with the same random draws (umt's, recorded), dropout and drop path off: the largest
difference is printed (``check_max_abs_diff``).

GPU: ``--device cuda --preset umt-b16`` (batch 32, 4 x 224, UMT-B/16, CLIP-B/16 teacher K = 6,
BERT-base with fusion from layer 9, captions of 32 tokens) with ``--precision bf16`` or ``fp16``
(autocast + ``torch.amp.GradScaler``, as the trainer) also prints peak memory.

``--compile`` adds a third variant: what ``train.compile=true`` does (every repeated block of
the module compiled: vision, text and teacher layers), on a copy of the same weights. The
variants are timed in one process, interleaved (round i runs each in turn).

The last line printed is a JSON object (``median_s``, ``mean_s``, ``steps``, ``pairs_per_s``,
``impl``, ``preset``, ``device``, ``precision``; with ``--impl both`` also ``official_median_s``
and ``speedup``; with ``--compile`` ``compiled_median_s``, the speedups and dynamo's graph and
graph-break counts).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics

import torch

from timing import compiled_ratios, interleaved, profile_top
from umt import losses
from umt.config import load_config
from umt.models import model_config
from umt.models.video_text import UMTVideoText
from umt.train.compile import compile_blocks
from umt.train.optim import build_optimizer, default_param_groups
from umt.train.step import train_step
from umt.train.tasks.video_text import VideoTextTrainModule

RECIPE = "umt-tiny-synthetic-stage2"
OFFICIAL_RECIPE = "umt-b16-5m"  # its video mask ratio (0.8) is timed; the tiny recipe trains at 0.5
SPECIAL = {"pad": 0, "cls": 101, "sep": 102, "mask": 103}  # bert-base-uncased / MiniLM ids


def _b16(name: str = "umt-b16-vt") -> dict:
    cfg = model_config(name)  # UMT-B/16 4x224 + BERT-base (fusion 9) + CLIP-B/16 (or L/16's)
    return dict(batch=32, vision=cfg["vision"], text=cfg["text"], teacher=cfg["teacher"],
                embed_dim=cfg["embed_dim"])  # fmt: skip


PRESETS = {
    "cpu-fixed": lambda: dict(
        batch=8,
        vision=dict(
            img_size=112,
            patch_size=16,
            num_frames=4,
            embed_dim=192,
            depth=4,
            num_heads=3,
            align_layers=2,
            align_dim=128,
        ),
        text=dict(
            vocab_size=30522,
            hidden_size=384,
            num_layers=6,
            num_heads=12,
            intermediate_size=1536,
            fusion_layer=4,
        ),
        teacher=dict(
            img_size=112,
            patch_size=16,
            width=128,
            layers=4,
            heads=4,
            output_dim=128,
            return_layers=2,
            normalize=False,
        ),
        embed_dim=128,
    ),  # fmt: skip
    "umt-b16": _b16,
    "umt-l16": lambda: _b16("umt-l16-vt"),
}


def build_model(preset: dict, drop_path: float) -> UMTVideoText:
    """The video-text model with random weights (the trainer's vision settings: xavier init,
    stage-2 alignment heads; the official ``[CLS]`` text pooling)."""
    vision = dict(preset["vision"], drop_path_rate=drop_path, weight_init="xavier")
    return UMTVideoText(vision=vision, text=dict(preset["text"]), embed_dim=preset["embed_dim"],
                        temp=0.07, teacher=dict(preset["teacher"]), text_pool="cls")  # fmt: skip


def captions(batch: int, length: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random captions as the tokenizer pads them: ``[CLS] words [SEP] [PAD]...`` of random
    lengths (6 to ``length`` tokens), ids ``[B, L]`` and mask ``[B, L]``."""
    ids = torch.full((batch, length), SPECIAL["pad"], dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for i in range(batch):
        n = int(torch.randint(6, length + 1, (1,), generator=g))
        ids[i, 0], ids[i, n - 1] = SPECIAL["cls"], SPECIAL["sep"]
        ids[i, 1 : n - 1] = torch.randint(1000, 29000, (n - 2,), generator=g)
        mask[i, :n] = 1
    return ids, mask


def umt_parts_and_draws(module: VideoTextTrainModule, micro: tuple) -> tuple[dict, dict]:
    """umt's loss parts of one micro-batch (no grad) and the random draws it made: the token
    mask, the VTM negatives and the MLM-masked captions."""
    from umt.train.tasks import video_text

    draws: dict = {}
    own_targets, hard, mask_tokens = (
        video_text.teacher_targets,
        losses.hard_negatives,
        losses.mask_tokens,
    )

    def teacher_targets(*a, **k):
        targets, draws["mask"] = own_targets(*a, **k)
        return targets, draws["mask"]

    def negatives(*a, **k):
        draws["negatives"] = hard(*a, **k)
        return draws["negatives"]

    def masked(*a, **k):
        draws["mlm"] = mask_tokens(*a, **k)
        return draws["mlm"]

    video_text.teacher_targets = teacher_targets
    losses.hard_negatives, losses.mask_tokens = negatives, masked
    try:
        with torch.no_grad():
            parts = module(*micro)
    finally:
        video_text.teacher_targets = own_targets
        losses.hard_negatives, losses.mask_tokens = hard, mask_tokens
    return {k: float(v) for k, v in parts.items()}, draws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default=None, choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--text-len", type=int, default=32)
    ap.add_argument("--batch", type=int, default=None, help="override the preset's batch")
    ap.add_argument("--drop-path", type=float, default=0.1)
    ap.add_argument(
        "--grad-checkpointing",
        type=int,
        default=0,
        help="recompute the first N vision blocks in the backward (as the recipes)",
    )
    ap.add_argument("--text-grad-checkpointing", action="store_true",
                    help="recompute the text layers in the backward (as the recipes)")  # fmt: skip
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time the step with train.compile's compiled blocks (vision, text, teacher) "
        "on a copy of the same weights, interleaved with the others",
    )
    ap.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="autocast dtype (fp16 with a grad scaler); auto: bf16 on GPU, fp32 on CPU",
    )
    ap.add_argument(
        "--impl",
        choices=["umt", "official", "both"],
        default=None,
        help="umt: this library's step; official: the official code's computation pattern "
        "(benchmarks/official_style_stage2.py) on the same weights; default: both on CPU, "
        "umt on GPU",
    )
    ap.add_argument(
        "--profile", action="store_true",
        help="profile two steps of each variant after timing: top ops in the JSON",
    )  # fmt: skip
    args = ap.parse_args()

    device = torch.device(args.device)
    preset_name = args.preset or ("cpu-fixed" if device.type == "cpu" else "umt-b16")
    impl = args.impl or ("both" if device.type == "cpu" else "umt")
    p = PRESETS[preset_name]()
    if args.batch:
        p["batch"] = args.batch
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    prec = args.precision
    if prec == "auto":
        prec = "bf16" if device.type == "cuda" else "fp32"
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext
    cuda = device.type == "cuda"

    torch.manual_seed(0)
    model = build_model(p, args.drop_path)
    official_ratio = load_config(OFFICIAL_RECIPE).mask.video_ratio
    cfg = load_config(
        RECIPE, [f"text.max_length={args.text_len}", f"mask.video_ratio={official_ratio}"]
    )
    lc = cfg.loss
    weights = {"uma": lc.uma, "vtc": lc.vtc, "vtm": lc.vtm, "mlm": lc.mlm}
    B, T, S = p["batch"], p["vision"]["num_frames"], p["vision"]["img_size"]
    g = torch.Generator().manual_seed(0)
    video = torch.randn(B, 3, T, S, S, generator=g).to(device)
    ids, att = (x.to(device) for x in captions(B, args.text_len, g))
    sample_ids = torch.arange(B, device=device)
    ratio = cfg.mask.video_ratio

    if args.grad_checkpointing:  # as the recipes set model.grad_checkpointing
        model.vision_encoder.set_grad_checkpointing(args.grad_checkpointing)
    if args.text_grad_checkpointing:  # as the recipes set text.grad_checkpointing
        model.text_encoder.set_grad_checkpointing(True)
    module = VideoTextTrainModule(model, cfg, SPECIAL).to(device)
    ref = None
    res: dict = {"preset": preset_name, "batch": B, "frames": T, "size": S,
                 "text_len": args.text_len, "video_ratio": ratio}  # fmt: skip
    if impl in ("official", "both"):
        from official_style_stage2 import make_official_video_text, official_forward

        ref = make_official_video_text(copy.deepcopy(model))
        opts = dict(ratio=ratio, mlm_prob=lc.mlm_prob, special=SPECIAL, weights=weights)
        # Same computation: the loss parts of one batch with umt's draws, dropout off, fp32.
        module.eval()
        ref.eval()
        micro = (video, ids, att, sample_ids, False, list(range(B)), 0)
        ours, draws = umt_parts_and_draws(module, micro)
        with torch.no_grad():
            theirs = official_forward(ref, video, ids, att, sample_ids, draws=draws, **opts)
        theirs = {k: float(v) for k, v in theirs.items()}
        diff = max(abs(ours[k] - theirs[k]) for k in ours)
        res["check_max_abs_diff"] = diff
        print("loss parts at step 0 (umt / official-style, same draws, no dropout): "
              + ", ".join(f"{k} {ours[k]:.6f} / {theirs[k]:.6f}" for k in ours)
              + f"; max abs diff {diff:.2e}")  # fmt: skip

    def micro_batch(i: int) -> tuple:
        return (video, ids, att, sample_ids, False, list(range(i * B, (i + 1) * B)), i)

    def umt_loss(net, micro):
        with autocast():
            return net(*micro)["loss"]

    def umt_run(net: torch.nn.Module):
        opt = build_optimizer(net, cfg, lr=1e-4)  # fused AdamW, the recipe's betas and decay
        scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
        return lambda i: train_step(net, opt, [micro_batch(i)], umt_loss, None, scaler)

    runs = {}
    if impl in ("official", "both"):
        # The official optimizer: torch's default AdamW (the for-loop update on the CPU).
        ref_opt = torch.optim.AdamW(default_param_groups(ref, cfg.optim.weight_decay),
                                    lr=1e-4, betas=tuple(cfg.optim.betas))  # fmt: skip
        ref_scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None

        def official_loss(net, micro):
            with autocast():
                return official_forward(net, *micro, **opts)["loss"]

        runs["official"] = lambda i: train_step(
            ref, ref_opt, [(video, ids, att, sample_ids)], official_loss, None, ref_scaler
        )
    if args.compile:
        compiled = VideoTextTrainModule(copy.deepcopy(model), cfg, SPECIAL).to(device)
        compile_blocks([compiled])  # what train.compile=true does in the loop
        runs["compiled"] = umt_run(compiled)
    if impl in ("umt", "both"):
        runs["umt"] = umt_run(module)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = interleaved(runs, args.steps, args.warmup, device)
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, m in med.items():
        print(f"{name}: median {m:.3f}s/step, {B / m:.1f} pairs/s over {len(times[name])} steps")
    main_name = "umt" if "umt" in med else "compiled" if "compiled" in med else "official"
    res.update(median_s=round(med[main_name], 4),
               mean_s=round(statistics.fmean(times[main_name]), 4))  # fmt: skip
    if "official" in med:
        res["official_median_s"] = round(med["official"], 4)
        if main_name != "official":
            res["speedup"] = round(med["official"] / med[main_name], 2)
    res.update(compiled_ratios(med, "official"))
    if args.profile:
        for name, run_one in runs.items():
            res[f"profile_{name}"] = profile_top(run_one, device)
    if cuda:  # all variants together (each holds its own model and optimizer)
        res["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    res.update(
        steps=len(times[main_name]),
        pairs_per_s=round(B / res["median_s"], 2),
        impl=main_name,
        compile=args.compile,
        device=torch.cuda.get_device_name(device) if cuda else "cpu",
        threads=torch.get_num_threads() if not cuda else None,
        precision=prec,
        drop_path=args.drop_path,
        torch=torch.__version__,
    )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
