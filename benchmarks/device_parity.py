"""The official fixtures computed on another device (CUDA): do the outputs still match?

    python benchmarks/device_parity.py --device cuda [--fixtures ../shared/fixtures/official_umt]

Loads the stage-1 and fine-tuning fixtures, runs them on the device in float32 (TF32 off) and in
bf16 autocast, and prints the largest absolute error against the stored official outputs. A
benchmark-style report for the GPU machine (the CPU parity tests are in ``tests/test_parity.py``).
Last line: a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from umt.models import load_student, load_teacher


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float()).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    default = os.environ.get("UMT_FIXTURES") or str(
        Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "official_umt"
    )
    ap.add_argument("--fixtures", default=default)
    args = ap.parse_args()
    root, dev = Path(args.fixtures), torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    cfg = json.loads((root / "stage1" / "config.json").read_text())
    io = load_file(str(root / "stage1" / "io.safetensors"))
    s, t = cfg["student"], cfg["teacher"]
    student = load_student(
        root / "stage1" / "student.pth", num_heads=s["encoder_num_heads"],
        num_frames=s["num_frames"], img_size=s["img_size"],
    ).eval().to(dev)  # fmt: skip
    teacher = load_teacher(
        root / "stage1" / "teacher_visual.pth", heads=t["heads"], img_size=t["input_resolution"],
        return_layers=t["clip_return_layer"],
    ).to(dev)  # fmt: skip
    video, mask = io["video"].to(dev), io["mask"].to(dev)
    report: dict[str, float | str] = {"device": str(dev), "torch": torch.__version__}
    for mode in ("fp32", "bf16"):
        amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=mode == "bf16")
        with torch.no_grad(), amp:
            features, attn = teacher(video)
            _, aligned = student.forward_pretrain(video, mask)
        report[f"{mode}_teacher_features"] = _err(features, io["teacher_features"])
        report[f"{mode}_teacher_cls_attn"] = _err(attn.flatten(0, 1), io["teacher_cls_attn"])
        report[f"{mode}_student_aligned"] = _err(aligned, io["student_aligned"])
    for case in ("finetune_learnedpos", "finetune_sincos"):
        c = json.loads((root / case / "config.json").read_text())
        ref = load_file(str(root / case / "io.safetensors"))
        model = load_student(
            root / case / "model.pth", num_heads=c["num_heads"], num_frames=c["all_frames"],
            img_size=c["img_size"],
        ).eval().to(dev)  # fmt: skip
        with torch.no_grad():
            report[f"fp32_{case}_logits"] = _err(model(ref["video"].to(dev)), ref["logits"])
    for k, v in report.items():
        print(f"{k:40s} {v:.3g}" if isinstance(v, float) else f"{k:40s} {v}")
    ok = all(v <= 1e-4 for k, v in report.items() if k.startswith("fp32") and isinstance(v, float))
    report["fp32_within_1e-4"] = ok
    print(json.dumps(report))


if __name__ == "__main__":
    main()
