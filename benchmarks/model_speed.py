"""Student forward+backward and teacher forward times at a fixed small size (no training loop).

    python benchmarks/model_speed.py [--threads 2] [--device cpu] [--iters 10]

Size: batch 4, 8 frames of 112x112, patch 16 (392 tokens), mask ratio 0.8 (80 kept tokens);
student 384 wide x 12 deep x 6 heads with 4 aligned layers onto 256-d; teacher 512 wide x 8 deep
x 8 heads. Prints one line per measurement and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from timing import timed
from umt.losses import uma_loss
from umt.masking import semantic_mask
from umt.models import CLIPTeacher, VideoViT


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)

    student = VideoViT(
        img_size=112,
        patch_size=16,
        num_frames=8,
        embed_dim=384,
        depth=12,
        num_heads=6,
        drop_path_rate=0.1,
        align_layers=4,
        align_dim=256,
    ).to(dev)
    teacher = CLIPTeacher(
        img_size=112, patch_size=16, width=512, layers=8, heads=8, output_dim=256, return_layers=4
    ).to(dev)
    video = torch.randn(4, 3, 8, 112, 112, device=dev)
    with torch.no_grad():
        hidden, attn = teacher.forward_hidden(video)
    mask = semantic_mask(attn, 0.8, torch.Generator(device=dev).manual_seed(0))
    targets = teacher.targets(hidden, mask)

    def teacher_fwd():
        with torch.no_grad():
            teacher(video)

    def teacher_fwd_masked():  # the training path: targets at the kept tokens only
        with torch.no_grad():
            kept, _, _ = teacher.forward_masked(video, lambda _attn: mask)
            teacher.project(kept)

    def student_fwd_bwd():
        student.zero_grad(set_to_none=True)
        loss = uma_loss(student.forward_aligned(video, mask), targets)
        loss.backward()

    results = {}
    for name, fn in (
        ("teacher_forward", teacher_fwd),
        ("teacher_forward_masked", teacher_fwd_masked),
        ("student_forward_backward", student_fwd_bwd),
    ):
        times = timed(lambda i, fn=fn: fn(), args.iters, args.warmup, dev)
        results[name + "_median_s"] = statistics.median(times)
        print(
            f"{name:28s} median {statistics.median(times) * 1e3:8.1f} ms  "
            f"min {min(times) * 1e3:8.1f} ms  ({args.iters} runs)"
        )
    results.update(
        device=str(dev),
        threads=args.threads,
        torch=torch.__version__,
        batch=4,
        frames=8,
        img=112,
        kept_tokens=int((~mask[0]).sum()),
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
