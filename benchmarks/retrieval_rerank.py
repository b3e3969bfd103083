"""ITM re-ranking throughput of ``umt evaluate retrieval`` (pairs per second), on CPU threads.

The re-ranking scores every (video, text) pair in each query's ITC top-k with the fusion layers.
The evaluation sorts the pairs by video, so a batch of pairs holds few distinct videos. Two ways
to feed them to the cross-attention are timed, interleaved in one process (same-run ratio):

- ``gathered``: each pair gets its own copy of its video's tokens, so every pair projects the
  video's tokens to keys and values again (what the evaluation did before);
- ``shared``: each distinct video's tokens are projected once per batch and the pairs index
  them (``itm_logits(..., vision_index=...)``, what :func:`umt.evaluate.retrieval._itm_scores`
  does now).

The model is a random :class:`UMTVideoText` whose text tower has BERT-base sizes (768 wide, 12
layers, cross-attention in layers 9-11, as UMT-B/16) and captions of ``--text-len`` tokens; each
video is ``--tokens`` tokens 768 wide (784 = 4 frames of 224 px, the MSRVTT test setting). The
pairs are those of ``--texts`` texts re-ranked against their top ``--k`` videos, sorted by video
as the evaluation sorts them.

The last line printed is a JSON object (``pairs_per_s_shared``, ``pairs_per_s_gathered``,
``speedup``, ...).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from search_latency import build_model
from timing import interleaved
from umt.evaluate.retrieval import _itm_scores


def gathered_scores(model, keys, num_texts, vision, text, mask, batch) -> torch.Tensor:
    """The same scores, each pair with its own copy of its video's tokens."""
    out = torch.empty(keys.numel())
    for start in range(0, keys.numel(), batch):
        chunk = keys[start : start + batch]
        vids, rows = chunk // num_texts, chunk % num_texts
        logits = model.itm_logits(text[rows], mask[rows], vision[vids])
        out[start : start + chunk.numel()] = logits[:, 1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--texts", type=int, default=64)
    ap.add_argument("--k", type=int, default=16, help="videos re-ranked per text")
    ap.add_argument("--tokens", type=int, default=784, help="tokens per video")
    ap.add_argument("--text-len", type=int, default=32)
    ap.add_argument("--itm-batch", type=int, default=32, help="pairs per fusion call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(768)
    g = torch.Generator().manual_seed(1)
    vision = torch.randn(args.videos, args.tokens, 768, generator=g)
    text = torch.randn(args.texts, args.text_len, model.text_encoder.hidden_size, generator=g)
    mask = torch.ones(args.texts, args.text_len, dtype=torch.long)
    top = torch.rand(args.texts, args.videos, generator=g).topk(args.k, dim=1).indices
    keys = (top * args.texts + torch.arange(args.texts).view(-1, 1)).flatten().sort().values
    cpu = torch.device("cpu")

    with torch.no_grad():
        shared = _itm_scores(model, keys, args.texts, vision, text, mask, args.itm_batch, cpu,
                             None, False)  # fmt: skip
        copies = gathered_scores(model, keys, args.texts, vision, text, mask, args.itm_batch)
        max_diff = float((shared - copies).abs().max())
        times = interleaved(
            {
                "shared": lambda i: _itm_scores(
                    model, keys, args.texts, vision, text, mask, args.itm_batch, cpu, None, False
                ),  # fmt: skip
                "gathered": lambda i: gathered_scores(
                    model, keys, args.texts, vision, text, mask, args.itm_batch
                ),  # fmt: skip
            },
            args.steps,
            args.warmup,
            cpu,
        )
    pairs = keys.numel()
    rate = {name: pairs / statistics.median(t) for name, t in times.items()}
    res = {
        "pairs": pairs,
        "videos": args.videos,
        "k": args.k,
        "tokens": args.tokens,
        "text_len": args.text_len,
        "itm_batch": args.itm_batch,
        "pairs_per_s_shared": round(rate["shared"], 1),
        "pairs_per_s_gathered": round(rate["gathered"], 1),
        "speedup": round(rate["shared"] / rate["gathered"], 2),
        "max_abs_diff": max_diff,
        "text_tower": "BERT-base sizes, fusion layers 9-11, random weights",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(
        f"ITM re-ranking of {pairs} pairs ({args.tokens} video tokens, {args.text_len} text "
        f"tokens): {res['pairs_per_s_shared']} pairs/s with each video's keys and values "
        f"projected once, {res['pairs_per_s_gathered']} pairs/s per pair ({res['speedup']}x); "
        f"largest score difference {max_diff:.2e}"
    )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
