"""Video-text retrieval: the official metrics (itm_eval + MdR/MnR), the test-set annotation
formats, the test-time clips, the ITC + ITM re-ranking (checked against brute force) and the
``run_retrieval`` command end to end on the synthetic videos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from umt.data.formats.retrieval import RetrievalSet, load_retrieval_annotations
from umt.data.retrieval import RetrievalVideoDataset, collate_retrieval
from umt.evaluate.retrieval import (
    FILL,
    METRIC_KEYS,
    best_ranks,
    evaluate_retrieval,
    format_tables,
    ranking_order,
    resolve_tokenizer,
    retrieval_metrics,
    run_retrieval,
    write_predictions,
)
from umt.losses import video_text_similarity
from umt.models import load_checkpoint, save_pretrained
from umt.models.video_text import UMTVideoText
from umt.text import Tokenizer


# --------------------------------------------------------------------------- reference
def official_itm_eval(scores_i2t, scores_t2i, txt2img, img2txt) -> dict[str, float]:
    """The official ``itm_eval`` (``retrieval_utils.py``) rewritten from its description:
    per query, the 0-based position of the best ground truth in ``argsort(score)[::-1]``."""

    def ranks(scores, truth):
        out = np.zeros(scores.shape[0])
        for i, row in enumerate(scores):
            order = np.argsort(row)[::-1]
            gts = [truth[i]] if isinstance(truth[i], int) else truth[i]
            out[i] = min(np.where(order == g)[0][0] for g in gts)
        return out

    tr, ir = ranks(scores_i2t, img2txt), ranks(scores_t2i, txt2img)
    res = {}
    for name, r in (("txt", tr), ("img", ir)):
        for k in (1, 5, 10):
            res[f"{name}_r{k}"] = 100.0 * (r < k).sum() / len(r)
        res[f"{name}_r_mean"] = (res[f"{name}_r1"] + res[f"{name}_r5"] + res[f"{name}_r10"]) / 3
    res["r_mean"] = (res["txt_r_mean"] + res["img_r_mean"]) / 2
    return {k: round(v, 2) for k, v in res.items()}


def _check_against_official(metrics, official):
    for ours, theirs in (("v2t", "txt"), ("t2v", "img")):
        for k in ("r1", "r5", "r10", "r_mean"):
            assert metrics[f"{ours}_{k}"] == pytest.approx(official[f"{theirs}_{k}"], abs=0.011)
    assert metrics["r_mean"] == pytest.approx(official["r_mean"], abs=0.011)


# --------------------------------------------------------------------------- metrics
def test_metrics_perfect_and_keys():
    scores = torch.eye(4) + 0.01 * torch.arange(16.0).view(4, 4)
    m = retrieval_metrics(scores, [[0], [1], [2], [3]], [[0], [1], [2], [3]])
    assert tuple(m) == METRIC_KEYS
    for d in ("t2v", "v2t"):
        assert m[f"{d}_r1"] == m[f"{d}_r5"] == m[f"{d}_r10"] == m[f"{d}_r_mean"] == 100.0
        assert m[f"{d}_medr"] == m[f"{d}_meanr"] == 1.0
    assert m["r_mean"] == 100.0


def test_metrics_known_ranks_median_mean():
    """12 candidates; the ground truths sit at 0-based ranks 0, 1, 4, 9, 11 in the v2t rows."""
    nv, nt = 5, 12
    scores = torch.zeros(nv, nt)
    wanted = [0, 1, 4, 9, 11]
    video_to_texts = []
    for v, rank in enumerate(wanted):
        order = [(v + j) % nt for j in range(nt)]  # candidate order for this row, best first
        scores[v, order] = torch.linspace(1.0, 0.0, nt)
        video_to_texts.append([order[rank]])
    text_to_videos = [[0] for _ in range(nt)]
    m = retrieval_metrics(scores, video_to_texts, text_to_videos)
    assert m["v2t_r1"] == 20.0  # rank 0
    assert m["v2t_r5"] == 60.0  # ranks 0, 1, 4
    assert m["v2t_r10"] == 80.0  # + rank 9
    assert m["v2t_r_mean"] == round((20 + 60 + 80) / 3, 2)
    assert m["v2t_medr"] == 5.0  # 1-based ranks 1 2 5 10 12
    assert m["v2t_meanr"] == 6.0
    # even count: numpy's median, the mean of the two middle ranks
    ranks = best_ranks(scores[:4], video_to_texts[:4])
    assert ranks.tolist() == [0, 1, 4, 9]
    m4 = retrieval_metrics(scores[:4], video_to_texts[:4], text_to_videos)
    assert m4["v2t_medr"] == 3.5 and m4["v2t_meanr"] == 4.5


def test_metrics_match_official_itm_eval_random():
    gen = torch.Generator().manual_seed(0)
    for nv, nt in ((30, 30), (17, 40), (40, 17)):
        scores = torch.randn(nv, nt, generator=gen)
        # MSRVTT-like: text t belongs to video t % nv
        t2v = [[t % nv] for t in range(nt)]
        v2t = [[t for t in range(nt) if t % nv == v] or [0] for v in range(nv)]
        t2v = [[v for v in range(nv) if t in v2t[v]] for t in range(nt)]
        ours = retrieval_metrics(scores, v2t, t2v)
        official = official_itm_eval(
            scores.numpy(), scores.t().numpy(), [g if len(g) > 1 else g[0] for g in t2v], v2t
        )
        _check_against_official(ours, official)


def test_metrics_multi_text_ground_truth_msvd():
    """MSVD: a video matches several texts; v2t takes the best of them, t2v is per text."""
    # video 0 <- texts 0, 1, 2; video 1 <- texts 3, 4
    v2t = [[0, 1, 2], [3, 4]]
    t2v = [[0], [0], [0], [1], [1]]
    scores = torch.tensor(
        [
            [0.1, 0.2, 0.9, 0.8, 0.3],  # best gt text 2 is first: rank 0
            [0.9, 0.8, 0.7, 0.1, 0.6],  # best gt text 4 at position 3 (0.9, 0.8, 0.7 above)
        ]
    )
    ranks = best_ranks(scores, v2t)
    assert ranks.tolist() == [0, 3]
    m = retrieval_metrics(scores, v2t, t2v)
    assert m["v2t_r1"] == 50.0 and m["v2t_r5"] == 100.0
    # t2v columns: text 0 -> videos (0.1, 0.9): video 0 second; text 3 -> (0.8, 0.1): video 1 second
    t2v_ranks = best_ranks(scores.t(), t2v)
    assert t2v_ranks.tolist() == [1, 1, 0, 1, 0]
    assert m["t2v_r1"] == 40.0 and m["t2v_medr"] == 2.0 and m["t2v_meanr"] == 1.6
    official = official_itm_eval(scores.numpy(), scores.t().numpy(), [0, 0, 0, 1, 1], v2t)
    _check_against_official(m, official)


def test_metrics_multi_video_ground_truth_ssv2():
    """SSv2: a text (label) matches several videos; t2v takes the best of them."""
    t2v = [[0, 1, 2], [3]]
    v2t = [[0], [0], [0], [1]]
    scores_v2t = torch.tensor([[0.1, 0.5], [0.2, 0.9], [0.8, 0.3], [0.4, 0.6]])
    # text 0 scores for videos: 0.1 0.2 0.8 0.4 -> video 2 first: rank 0
    # text 1 scores: 0.5 0.9 0.3 0.6 -> video 3 is second
    assert best_ranks(scores_v2t.t(), t2v).tolist() == [0, 1]
    m = retrieval_metrics(scores_v2t, v2t, t2v)
    assert m["t2v_r1"] == 50.0 and m["t2v_r5"] == 100.0
    assert best_ranks(scores_v2t, v2t).tolist() == [1, 1, 0, 0]
    official = official_itm_eval(scores_v2t.numpy(), scores_v2t.t().numpy(), t2v, [0, 0, 0, 1])
    _check_against_official(m, official)


def test_ties_lower_index_first_and_tiebreak():
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.1]])
    assert ranking_order(scores).tolist() == [[0, 1, 2, 3]]
    assert best_ranks(scores, [[2]]).tolist() == [2]
    assert best_ranks(scores, [[0]]).tolist() == [0]
    tiebreak = torch.tensor([[0.0, 0.3, 0.9, 1.0]])  # ties ordered by it; 3 stays last
    assert ranking_order(scores, tiebreak).tolist() == [[2, 1, 0, 3]]
    assert best_ranks(scores, [[2]], tiebreak).tolist() == [0]
    # the -100 fill of the re-ranked matrices: outside the top-k the ITC order decides
    itm = torch.tensor([[3.0, -100.0, -100.0, 1.0]])
    itc = torch.tensor([[0.9, 0.1, 0.5, 0.8]])
    assert ranking_order(itm, itc).tolist() == [[0, 3, 2, 1]]
    m = retrieval_metrics(itm, [[2]], [[0], [0], [0], [0]], tiebreak=itc)
    assert m["v2t_medr"] == 3.0


def test_metrics_separate_t2v_matrix_and_errors():
    v2t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t2v = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # every text ranks its video second
    m = retrieval_metrics(v2t, [[0], [1]], [[0], [1]], scores_t2v=t2v)
    assert m["v2t_r1"] == 100.0 and m["t2v_r1"] == 0.0 and m["t2v_medr"] == 2.0
    assert m["r_mean"] == round((100.0 + (0 + 100 + 100) / 3) / 2, 2)
    with pytest.raises(ValueError, match="no ground truth"):
        retrieval_metrics(v2t, [[0], []], [[0], [1]])
    with pytest.raises(ValueError, match="out of range"):
        retrieval_metrics(v2t, [[0], [5]], [[0], [1]])
    with pytest.raises(ValueError, match="ground truth has"):
        retrieval_metrics(v2t, [[0]], [[0], [1]])
    with pytest.raises(ValueError, match=r"scores_t2v must be \[2, 2\]"):
        retrieval_metrics(v2t, [[0], [1]], [[0], [1]], scores_t2v=torch.zeros(3, 2))


def test_format_tables():
    m = retrieval_metrics(torch.eye(3), [[0], [1], [2]], [[0], [1], [2]])
    both = {**m, **{f"{k}_itc": v for k, v in m.items()}}
    text = format_tables(both)
    assert "ITM re-ranked" in text and "ITC only" in text and "text -> video" in text
    assert "100.00" in text
    assert "ITM re-ranked" not in format_tables(m, reranked=False)


# --------------------------------------------------------------------------- annotations
def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_annotations_msrvtt_lsmdc(tmp_path):
    _touch(tmp_path, "v/a.mp4", "v/b.mp4")
    ann = _write(
        tmp_path / "msrvtt.json",
        [{"video": "v/a.mp4", "caption": "A man runs."}, {"video": "v/b.mp4", "caption": "cats"}],
    )
    rs = load_retrieval_annotations(ann)
    assert isinstance(rs, RetrievalSet)
    assert rs.videos == [os.fspath(tmp_path / "v/a.mp4"), os.fspath(tmp_path / "v/b.mp4")]
    assert rs.listed == ["v/a.mp4", "v/b.mp4"]
    assert rs.texts == ["A man runs.", "cats"]  # kept as written; the tokenizer cleans
    assert rs.text_to_videos == [[0], [1]] and rs.video_to_texts == [[0], [1]]
    assert not rs.multi_vision_gt and not rs.paragraph
    assert rs.source == os.fspath(ann)


def test_annotations_root_and_absolute(tmp_path):
    _touch(tmp_path, "data/x.mp4", "abs/y.mp4")
    ann = _write(
        tmp_path / "lists/test.json",
        [
            {"video": "x.mp4", "caption": "x"},
            {"video": os.fspath(tmp_path / "abs/y.mp4"), "caption": "y"},
        ],
    )
    rs = load_retrieval_annotations(ann, root=tmp_path / "data")
    assert rs.videos == [os.fspath(tmp_path / "data/x.mp4"), os.fspath(tmp_path / "abs/y.mp4")]


def test_annotations_msvd_multi_text(tmp_path):
    _touch(tmp_path, "a.avi", "b.avi")
    ann = _write(
        tmp_path / "msvd.json",
        [
            {"video": "a.avi", "caption": ["one", "two", "three"]},
            {"video": "b.avi", "caption": ["four", "five"]},
        ],
    )
    rs = load_retrieval_annotations(ann)
    assert rs.texts == ["one", "two", "three", "four", "five"]
    assert rs.video_to_texts == [[0, 1, 2], [3, 4]]
    assert rs.text_to_videos == [[0], [0], [0], [1], [1]]


def test_annotations_paragraph_didemo_anet(tmp_path):
    _touch(tmp_path, "a.mp4", "b.mp4")
    ann = _write(
        tmp_path / "didemo.json",
        [
            {"video": "a.mp4", "caption": ["The dog jumps.", " It lands. "]},
            {"video": "b.mp4", "caption": "single sentence"},
        ],
    )
    rs = load_retrieval_annotations(ann, paragraph=True)
    assert rs.paragraph
    assert rs.texts == ["The dog jumps.  It lands. ", "single sentence"]
    assert rs.text_to_videos == [[0], [1]] and rs.video_to_texts == [[0], [1]]
    # without paragraph=True the same file is MSVD-like: one text per sentence
    assert load_retrieval_annotations(ann).num_texts == 3


def test_annotations_ssv2_multi_vision(tmp_path):
    _touch(tmp_path, *(f"{i}.webm" for i in range(5)))
    ann = _write(
        tmp_path / "ssv2_label.json",
        [
            {"video": ["0.webm", "1.webm"], "caption": "pushing something"},
            {"video": "2.webm", "caption": "pulling something"},
            {"video": ["3.webm"], "caption": "pushing something"},  # same caption: same text
            {"video": "4.webm", "caption": "pulling something"},
        ],
    )
    rs = load_retrieval_annotations(ann)
    assert rs.multi_vision_gt
    assert rs.texts == ["pushing something", "pulling something"]
    assert rs.text_to_videos == [[0, 1, 3], [2, 4]]
    assert rs.video_to_texts == [[0], [0], [1], [0], [1]]
    # forced off: every entry's caption is its own text, as in MSRVTT
    off = load_retrieval_annotations(ann, multi_vision_gt=False)
    assert off.num_texts == 4 and off.text_to_videos[2] == [3]
    # forced on for a per-video file without lists
    ann2 = _write(
        tmp_path / "ssv2_per_video.json",
        [{"video": "0.webm", "caption": "a"}, {"video": "1.webm", "caption": "a"}],
    )
    assert load_retrieval_annotations(ann2).num_texts == 2
    on = load_retrieval_annotations(ann2, multi_vision_gt=True)
    assert on.texts == ["a"] and on.text_to_videos == [[0, 1]]


def test_annotations_duplicate_video_is_one_video(tmp_path):
    _touch(tmp_path, "a.mp4", "b.mp4")
    ann = _write(
        tmp_path / "dup.json",
        [
            {"video": "a.mp4", "caption": "first"},
            {"video": "b.mp4", "caption": "second"},
            {"video": "./a.mp4", "caption": "third"},
            {"video": "a.mp4", "caption": "fourth"},
        ],
    )
    rs = load_retrieval_annotations(ann)
    assert rs.num_videos == 2 and rs.listed == ["a.mp4", "b.mp4"]  # "./a.mp4" is a.mp4
    assert rs.video_to_texts == [[0, 2, 3], [1]]
    assert rs.text_to_videos == [[0], [1], [0], [0]]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ({"video": "a.mp4"}, "expected a JSON list"),
        ([], "annotation list is empty"),
        (["a.mp4"], "entry 0 is a JSON str"),
        ([{"caption": "x"}], "entry 0 has no 'video'"),
        ([{"video": "a.mp4", "caption": "x"}, {"video": "a.mp4"}], "entry 1 has no 'caption'"),
        ([{"video": 3, "caption": "x"}], "'video' must be a path"),
        ([{"video": [], "caption": "x"}], "'video' must be a path"),
        ([{"video": "a.mp4", "caption": []}], "'caption' must be a string"),
        ([{"video": "a.mp4", "caption": ["x", 1]}], "'caption' must be a string"),
    ],
)
def test_annotation_errors(tmp_path, content, match):
    _touch(tmp_path, "a.mp4")
    ann = _write(tmp_path / "bad.json", content)
    with pytest.raises(ValueError, match=match) as info:
        load_retrieval_annotations(ann)
    message = str(info.value)
    assert message.startswith(os.fspath(ann)) and "\n" not in message


def test_annotation_missing_file_and_videos(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_retrieval_annotations(tmp_path / "nope.json")
    _touch(tmp_path, "v/0.mp4")
    ann = _write(
        tmp_path / "t.json", [{"video": f"v/{i}.mp4", "caption": str(i)} for i in range(6)]
    )
    with pytest.raises(FileNotFoundError) as info:
        load_retrieval_annotations(ann)
    message = str(info.value)
    assert message.startswith(os.fspath(ann))
    assert "5 of 6 videos not found" in message
    assert "v/1.mp4, v/2.mp4, v/3.mp4, ..." in message and "v/4.mp4" not in message
    assert "silently change the metric" in message and "fix the list" in message
    assert "\n" not in message
    assert load_retrieval_annotations(ann, check_files=False).num_videos == 6


# --------------------------------------------------------------------------- test clips
def test_retrieval_video_dataset_middle_and_max_seconds(synthetic):
    from umt.data.decode import probe_video, read_frames
    from umt.data.sampling import interval_indices

    rs = load_retrieval_annotations(synthetic / "val.json")
    path = rs.videos[0]
    info = probe_video(path)
    n, fps = info.num_frames, info.fps
    assert n / fps > 0.5  # the check below trims it
    ds = RetrievalVideoDataset(rs, num_frames=4, input_size=24)
    assert len(ds) == rs.num_videos
    sample = ds[0]
    assert sample["video"].shape == (3, 4, 24, 24) and sample["video"].dtype == torch.uint8

    def expected(indices):
        """The official test transform: torchvision's tensor Resize((24, 24), BICUBIC) of
        torchvision 0.13 (no antialiasing on tensors), uint8 kept."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        frames = torch.from_numpy(read_frames(path, indices)).permute(0, 3, 1, 2)
        resized = TF.resize(frames, [24, 24], InterpolationMode.BICUBIC, antialias=False)
        return resized.permute(1, 0, 2, 3)

    assert torch.equal(sample["video"], expected(interval_indices(n, 4, train=False)))
    trimmed = RetrievalVideoDataset(rs, num_frames=4, input_size=24, max_seconds=0.5)
    keep = int(0.5 * fps)
    assert torch.equal(trimmed[0]["video"], expected(interval_indices(keep, 4, train=False)))
    norm = RetrievalVideoDataset(rs, num_frames=4, input_size=24, normalize=True)[0]["video"]
    mean = torch.tensor(ds.mean).view(3, 1, 1, 1)
    std = torch.tensor(ds.std).view(3, 1, 1, 1)
    assert torch.allclose(norm, (sample["video"].float() / 255 - mean) / std, atol=1e-6)


def test_retrieval_video_dataset_fault_not_replaced(tmp_path, synthetic):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    good = load_retrieval_annotations(synthetic / "val.json").videos[0]
    ds = RetrievalVideoDataset([good, os.fspath(bad)], num_frames=2, input_size=16)
    sample = ds[1]
    assert sample["index"] == 1 and "fault" in sample and "video" not in sample
    batch = collate_retrieval([ds[0], ds[1]])
    assert batch["video"].shape == (1, 3, 2, 16, 16)
    assert batch["index"].tolist() == [0]
    assert batch["faults"][0][:2] == (1, os.fspath(bad))
    assert collate_retrieval([ds[1]])["video"] is None


# --------------------------------------------------------------------------- models
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "a the red blue green square circle moves left right up slowly quickly appears then "
    "dog cat runs jumps"
).split()


def _vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(SPECIALS + WORDS) + "\n", encoding="utf-8")
    return path


def _tiny_model(seed: int = 0, vocab_size: int = len(SPECIALS) + len(WORDS)) -> UMTVideoText:
    torch.manual_seed(seed)
    model = UMTVideoText(
        vision=dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2),
        text=dict(
            vocab_size=vocab_size,
            hidden_size=32,
            num_layers=3,
            num_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            fusion_layer=2,
            dropout=0.0,
            attention_dropout=0.0,
        ),
        embed_dim=16,
    )
    with torch.no_grad():  # livelier scores than the zero-bias init
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


class _MemoryVideos:
    """In-memory normalised clips in place of decoded files (same sample layout)."""

    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)

    def __init__(self, videos: torch.Tensor) -> None:
        self.videos = videos

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.videos[i], "index": i, "path": f"mem{i}"}


def _memory_set(num_videos: int, seed: int = 0) -> tuple[RetrievalSet, _MemoryVideos]:
    """MSVD-like: video v has 1 + v % 2 captions of random words."""
    rng = np.random.default_rng(seed)
    texts, t2v, v2t = [], [], []
    for v in range(num_videos):
        v2t.append([])
        for _ in range(1 + v % 2):
            v2t[v].append(len(texts))
            t2v.append([v])
            texts.append(" ".join(rng.choice(WORDS, size=int(rng.integers(2, 7)))))
    rset = RetrievalSet(
        videos=[f"mem{v}" for v in range(num_videos)],
        texts=texts,
        text_to_videos=t2v,
        video_to_texts=v2t,
        source="memory",
    )
    gen = torch.Generator().manual_seed(seed)
    return rset, _MemoryVideos(torch.randn(num_videos, 3, 4, 32, 32, generator=gen))


def _brute_force(model, rset, videos, tok, max_len):
    """ITC and the ITM match logit of every (video, text) pair, one pair at a time."""
    with torch.no_grad():
        ids, mask = tok(rset.texts, max_length=max_len)
        text_embeds, pooled_t = model.encode_text(ids, mask)
        vision_embeds, pooled_v = model.encode_vision(videos.videos)
        itc = video_text_similarity(
            model.vision_features(pooled_v), model.text_features(pooled_t), 1.0
        )
        itm = torch.empty_like(itc)
        for v in range(itc.shape[0]):
            for t in range(itc.shape[1]):
                logits = model.itm_logits(
                    text_embeds[t : t + 1], mask[t : t + 1], vision_embeds[v : v + 1]
                )
                itm[v, t] = logits[0, 1]
    return itc, itm


def _keep_topk(itm: torch.Tensor, itc: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's ``k`` best by ITC keep their ITM score, the rest -100."""
    out = torch.full_like(itm, FILL)
    top = itc.topk(min(k, itc.shape[1]), dim=1).indices
    return out.scatter(1, top, itm.gather(1, top))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    return Tokenizer.from_pretrained(_vocab(tmp_path_factory.mktemp("vocab")))


def test_rerank_topk_matches_brute_force(tokenizer):
    model = _tiny_model()
    rset, videos = _memory_set(7)  # 7 videos, 10 texts
    itc, itm = _brute_force(model, rset, videos, tokenizer, 12)
    k = 3
    res = evaluate_retrieval(
        model,
        rset,
        tokenizer,
        k_test=k,
        max_text_len=12,
        batch_size=3,
        itm_batch_size=4,
        num_workers=0,
        progress=False,
        dataset=videos,
    )
    assert torch.allclose(res.itc, itc, atol=1e-5)
    assert res.itm_v2t.shape == (7, 10) and res.itm_t2v.shape == (10, 7)
    assert torch.allclose(res.itm_v2t, _keep_topk(itm, itc, k), atol=1e-5)
    assert torch.allclose(res.itm_t2v, _keep_topk(itm.t(), itc.t(), k), atol=1e-5)
    assert ((res.itm_v2t != FILL).sum(1) == k).all() and ((res.itm_t2v != FILL).sum(1) == k).all()
    # a pair wanted by both directions is scored once
    both = (res.itm_v2t != FILL) | (res.itm_t2v.t() != FILL)
    assert res.itm_pairs == int(both.sum())
    expected = retrieval_metrics(
        _keep_topk(itm, itc, k),
        rset.video_to_texts,
        rset.text_to_videos,
        scores_t2v=_keep_topk(itm.t(), itc.t(), k),
        tiebreak=itc,
    )
    assert {key: res.metrics[key] for key in METRIC_KEYS} == expected
    itc_only = retrieval_metrics(itc, rset.video_to_texts, rset.text_to_videos)
    assert {key: res.metrics[f"{key}_itc"] for key in METRIC_KEYS} == itc_only
    assert res.ranks["t2v"].shape == (10,) and res.ranks["v2t_itc"].shape == (7,)
    summary = res.summary()
    assert summary["videos"] == 7 and summary["texts"] == 10 and summary["reranked"]


def test_rerank_full_k_is_full_itm_ranking(tokenizer):
    model = _tiny_model(seed=1)
    rset, videos = _memory_set(5, seed=1)
    itc, itm = _brute_force(model, rset, videos, tokenizer, 10)
    common = dict(max_text_len=10, num_workers=0, progress=False, dataset=videos)
    res = evaluate_retrieval(model, rset, tokenizer, k_test=1000, itm_batch_size=1, **common)
    assert torch.allclose(res.itm_v2t, itm, atol=1e-5)
    assert torch.allclose(res.itm_t2v, itm.t(), atol=1e-5)
    assert res.itm_pairs == itm.numel()
    full = retrieval_metrics(itm, rset.video_to_texts, rset.text_to_videos)
    assert {key: res.metrics[key] for key in METRIC_KEYS} == full
    # ITC only: no re-ranking, the plain keys repeat the ITC numbers
    only = evaluate_retrieval(model, rset, tokenizer, k_test=0, **common)
    assert only.itm_v2t is None and only.itm_t2v is None and not only.reranked
    assert only.itm_pairs == 0 and only.k_test == 0
    for key in METRIC_KEYS:
        assert only.metrics[key] == only.metrics[f"{key}_itc"] == res.metrics[f"{key}_itc"]
    assert res.texts_at_max_len == only.texts_at_max_len == 0
    # every text has >= 2 words: [CLS] w w fills 3 tokens (the official input: no [SEP])
    common["max_text_len"] = 3
    short = evaluate_retrieval(model, rset, tokenizer, k_test=0, **common)
    assert short.texts_at_max_len == rset.num_texts
    common["max_text_len"] = 65
    with pytest.raises(ValueError, match="exceeds the text encoder's 64 positions"):
        evaluate_retrieval(model, rset, tokenizer, k_test=0, **common)


def test_official_multimodal_fixture(official_root):
    """The official model's ITC matrix (its sim_v2t times its temperature) and ITM match
    logits of the matched pairs come out of the evaluation unchanged."""
    from official_fixtures import load_case

    cfg, io = load_case(official_root, "multimodal")
    v = cfg["vision_encoder"]
    model = load_checkpoint(
        official_root / "multimodal" / "model.pth",
        num_heads=v["encoder_num_heads"],
        num_frames=v["num_frames"],
        img_size=v["img_size"],
        text_num_heads=cfg["text_encoder_bert"]["num_attention_heads"],
        teacher_heads=cfg["teacher"]["heads"],
        teacher_img_size=cfg["teacher"]["input_resolution"],
    ).eval()
    videos = _MemoryVideos(io["video_btchw"].permute(0, 2, 1, 3, 4))
    b = len(videos)

    def given_ids(texts, max_length):
        rows = [int(t) for t in texts]
        return io["input_ids"][rows, :max_length], io["attention_mask"][rows, :max_length]

    rset = RetrievalSet(
        videos=[f"v{i}" for i in range(b)],
        texts=[str(i) for i in range(b)],
        text_to_videos=[[i] for i in range(b)],
        video_to_texts=[[i] for i in range(b)],
    )
    res = evaluate_retrieval(
        model,
        rset,
        given_ids,
        k_test=128,
        max_text_len=io["input_ids"].shape[1],
        num_workers=0,
        progress=False,
        dataset=videos,
    )
    temp = float(model.temp.detach())
    assert torch.allclose(res.itc, io["sim_v2t"] * temp, atol=1e-5)
    assert torch.allclose(res.itm_v2t.diagonal(), io["itm_logits"][:, 1], atol=1e-4)
    assert torch.allclose(res.itm_t2v.diagonal(), io["itm_logits"][:, 1], atol=1e-4)


def test_resolve_tokenizer(tmp_path):
    model = _tiny_model()
    folder = tmp_path / "ckpt"
    save_pretrained(model, folder)
    _vocab(folder)
    tok = resolve_tokenizer(folder, model)
    assert tok.vocab_size == len(SPECIALS) + len(WORDS)
    assert resolve_tokenizer(folder / "model.safetensors", model).vocab_size == tok.vocab_size
    big = tmp_path / "big"
    big.mkdir()
    (big / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + ["x", "y", "z"]) + "\n")
    with pytest.raises(ValueError, match="not this model's vocabulary"):
        resolve_tokenizer(folder, model, tokenizer=big)


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("umt_vt")
    save_pretrained(_tiny_model(seed=3), folder)
    _vocab(folder)  # found beside the weights
    return folder


def test_run_retrieval_end_to_end(saved_model, synthetic, tmp_path):
    subset = json.loads((synthetic / "val.json").read_text())[:12]
    ann = _write(tmp_path / "val12.json", subset)
    lines: list[str] = []
    pred = tmp_path / "out" / "pred.jsonl"
    res = run_retrieval(
        saved_model,
        ann,
        root=synthetic,
        num_frames=4,
        k_test=5,
        max_text_len=16,
        batch_size=5,
        predictions=pred,
        num_workers=0,
        progress=False,
        out=lines.append,
    )
    for key in ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5", "v2t_r10", "t2v_r1_itc"):
        assert 0.0 <= res[key] <= 100.0
    assert res["videos"] == 12 and res["texts"] == 12 and res["k_test"] == 5
    assert res["predictions"] == os.fspath(pred)
    json.dumps(res)  # JSON-able
    text = "\n".join(lines)
    assert "12 videos, 12 texts" in text and "ITM re-ranked" in text and "ITC only" in text
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    assert len(rows) == 24
    first = rows[0]
    assert first["query"] == "text" and first["text"] == subset[0]["caption"]
    assert first["gt_videos"] == [subset[0]["video"]]
    assert len(first["top"]) == 10 and 1 <= first["rank"] <= 12
    scored = [item for item in first["top"] if item["itm"] is not None]
    assert len(scored) == 5 and first["top"][:5] == scored  # the re-ranked five lead
    itm = [item["itm"] for item in scored]
    assert itm == sorted(itm, reverse=True)
    rest = [item["itc"] for item in first["top"][5:]]
    assert rest == sorted(rest, reverse=True)
    video_rows = [r for r in rows if r["query"] == "video"]
    assert len(video_rows) == 12 and video_rows[0]["gt_texts"] == [0]
    # rank in the file = rank behind the metrics
    r1 = sum(r["rank"] == 1 for r in rows if r["query"] == "text") / 12 * 100
    assert res["t2v_r1"] == pytest.approx(r1, abs=0.01)


def test_run_retrieval_errors(saved_model, synthetic, tmp_path):
    subset = json.loads((synthetic / "val.json").read_text())[:2]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"garbage, not a video")
    entries = [
        {"video": os.fspath(synthetic / e["video"]), "caption": e["caption"]} for e in subset
    ]
    ann = _write(tmp_path / "bad.json", [*entries, {"video": "broken.mp4", "caption": "x"}])
    common = dict(num_workers=0, progress=False, out=None)
    with pytest.raises(ValueError, match="1 of 3 videos could not be read") as info:
        run_retrieval(saved_model, ann, **common)
    assert "broken.mp4" in str(info.value) and "silently change the metric" in str(info.value)
    good = _write(tmp_path / "good.json", entries)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="a_file is a file, not a folder"):
        run_retrieval(saved_model, good, predictions=blocker / "p.jsonl", **common)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        run_retrieval(tmp_path / "none", good, **common)
    missing = _write(tmp_path / "missing.json", [{"video": "nope.mp4", "caption": "x"}])
    with pytest.raises(FileNotFoundError, match="1 of 1 videos not found"):
        run_retrieval(saved_model, missing, **common)


def test_write_predictions_unwritable(tokenizer, tmp_path):
    model = _tiny_model()
    rset, videos = _memory_set(3)
    res = evaluate_retrieval(
        model, rset, tokenizer, k_test=2, num_workers=0, progress=False, dataset=videos
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write the predictions file"):
        write_predictions(blocker / "sub" / "p.jsonl", res)
    out = write_predictions(tmp_path / "p.jsonl", res, top=2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == rset.num_texts + rset.num_videos
    assert all(len(r["top"]) == 2 for r in rows)


def test_autocast_and_no_offload_agree(tokenizer):
    """bfloat16 autocast (video tokens stored in it) and tokens kept on the device give the
    float32 result up to bfloat16 precision."""
    model = _tiny_model(seed=4)
    rset, videos = _memory_set(4, seed=4)
    common = dict(k_test=3, num_workers=0, progress=False, dataset=videos)
    ref = evaluate_retrieval(model, rset, tokenizer, **common)
    amp = evaluate_retrieval(
        model, rset, tokenizer, amp_dtype=torch.bfloat16, offload=False, **common
    )
    assert amp.itc.dtype == torch.float32
    assert torch.allclose(amp.itc, ref.itc, atol=0.05)
    picked = ref.itm_v2t != FILL
    same = picked & (amp.itm_v2t != FILL)  # top-k may differ where ITC values are close
    assert same.sum() >= picked.sum() - 2
    assert torch.allclose(amp.itm_v2t[same], ref.itm_v2t[same], atol=0.1)


def test_package_exports():
    import umt.evaluate as ev

    assert ev.run_retrieval is run_retrieval
    assert ev.write_retrieval_predictions is write_predictions
    assert ev.write_predictions.__module__ == "umt.evaluate.classification"
    assert {"evaluate_retrieval", "retrieval_metrics", "RetrievalResult"} <= set(dir(ev))
