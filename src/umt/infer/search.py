"""Search your own videos by text: ``umt embed`` builds an index, ``umt search`` queries it, and
zero-shot classification ranks class names (``umt classify --zero-shot``).

The index is a folder::

    index.json                 settings (checkpoint, a fingerprint of the model's weights,
                               frames, size, widths), the video count and each chunk's sha256
    videos.txt                 the videos, one path per line, in index order
    chunks/chunk_000000.safetensors
                               per-frame video features [n, T, D] (l2-normalised, float16) of
                               a chunk of videos, with the chunk's paths and failures in its
                               metadata; with --store-tokens also the video tokens [n, N, C]
                               that ITM re-ranking needs (else they are recomputed from the
                               files for the top k only)

Chunks are written atomically one after another, so an interrupted ``umt embed`` resumes where
it stopped. ITC scores are the official ones (mean over frames of the cosine); ``--rerank``
replaces the top k by the ITM head's match logit, as the official retrieval re-ranking.

Example::

    from umt.infer.search import embed_videos, load_index, search
    embed_videos(model, tokenizer, ["a.mp4", "b.mp4"], "index/", checkpoint="b16_25m.pth")
    index = load_index("index/")
    hits = search(index, model, tokenizer, ["a person surfing"], top_k=5)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from umt.errors import InputError
from umt.textfile import read_text
from umt.utils.files import sha256_file

__all__ = [
    "VIDEO_EXTENSIONS",
    "ZERO_SHOT_TEMPLATES",
    "Hit",
    "VideoIndex",
    "check_model",
    "check_queries",
    "class_text_features",
    "model_fingerprint",
    "list_videos",
    "embed_videos",
    "load_index",
    "search",
    "text_features",
    "zero_shot_classify",
    "zero_shot_classify_videos",
    "ZeroShotPrediction",
    "read_class_names",
]

INDEX_VERSION = 2  # 2: model fingerprint and chunk checksums; 1 still reads
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")
LIST_EXTENSIONS = (".txt", ".csv", ".json", ".jsonl")
# Prompt templates of zero-shot classification, averaged per class (CLIP-style ensembling).
ZERO_SHOT_TEMPLATES = (
    "{}",
    "a video of {}",
    "a video of a person {}",
    "a video of someone {}",
    "a clip of {}",
    "a video showing {}",
)


# --------------------------------------------------------------------------- inputs
def list_videos(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """The videos named by ``inputs``: video files, folders (searched recursively for video
    files, sorted) and list files (``.txt`` / ``.csv``: a path first on each line; ``.json``: a
    list of paths or of ``{"video": path}``; relative paths are taken from the list's folder)."""
    out: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise FileNotFoundError(
                    f"{path}: a folder without video files ({VIDEO_EXTENSIONS})"
                )
            out.extend(found)
        elif path.suffix.lower() in LIST_EXTENSIONS and path.is_file():
            out.extend(_read_list(path))
        elif path.is_file():
            out.append(str(path))
        else:
            raise FileNotFoundError(f"{path}: no such video, folder or list")
    if not out:
        raise InputError("no videos given")
    return out


def _read_list(path: Path) -> list[str]:
    base = path.parent
    text = read_text(path)
    entries: list[str] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON list of paths or of {{'video': path}}")
        for i, e in enumerate(data):
            name = e.get("video") if isinstance(e, dict) else e
            if isinstance(name, list):
                entries.extend(str(n) for n in name)
            elif isinstance(name, str):
                entries.append(name)
            else:
                raise InputError(f"{path}: entry {i} names no video")
    else:
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            first = line.split(",")[0].strip() if path.suffix.lower() == ".csv" else line
            if path.suffix.lower() == ".jsonl":
                first = json.loads(line).get("video", "")
            elif " " in first and not (base / first).exists() and not Path(first).exists():
                first = first.rsplit(" ", 1)[0]  # "path label" lines
            entries.append(first)
    seen: dict[str, None] = {}
    for e in entries:
        seen[str(Path(e) if Path(e).is_absolute() else base / e)] = None
    return list(seen)


# --------------------------------------------------------------------------- the index
@dataclass
class VideoIndex:
    """A loaded index: ``features`` ``[N, T, D]`` (l2-normalised per frame, float32), the
    paths, the settings, and the stored video tokens when the index has them."""

    root: Path
    paths: list[str]
    features: torch.Tensor
    settings: dict[str, Any]
    failed: list[tuple[str, str]] = field(default_factory=list)
    tokens: dict[int, tuple[int, int]] = field(default_factory=dict)  # video -> (chunk, row)

    def __len__(self) -> int:
        return len(self.paths)

    def video_tokens(self, rows: Sequence[int]) -> torch.Tensor | None:
        """Stored tokens ``[k, N, C]`` of the given videos (None when not stored)."""
        if not self.settings.get("store_tokens"):
            return None
        from safetensors import safe_open

        out = []
        for r in rows:
            chunk, row = self.tokens[int(r)]
            with safe_open(str(_chunk_path(self.root, chunk)), "pt") as f:
                out.append(f.get_slice("tokens")[row : row + 1])
        return torch.cat(out).float()


def _chunk_path(root: Path, k: int) -> Path:
    return root / "chunks" / f"chunk_{k:06d}.safetensors"


def model_fingerprint(model: Any) -> str:
    """A short hex digest of a model's weights: every tensor's name and shape and a strided
    sample of up to 1024 of its values (bit-exact, so the same on any device). Equal for two
    copies of one checkpoint wherever they lie; different for another model or fine-tune."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 1024)][:1024].to("cpu", torch.float32)
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def check_model(index: VideoIndex, model: Any, checkpoint: str | os.PathLike = "") -> None:
    """Refuse (``ValueError``, one line naming both) a model other than the one that made
    ``index``: its joint-space width, or its weights' fingerprint, differs. Indexes of
    version 1 carry no fingerprint: only the width is compared."""
    given = os.fspath(checkpoint) if checkpoint else "the given model"
    made_by = index.settings.get("checkpoint") or "another model"
    if int(model.embed_dim) != int(index.settings["embed_dim"]):
        raise InputError(
            f"{given}: its joint space is {model.embed_dim}-d, the index {index.root}'s "
            f"{index.settings['embed_dim']}-d (made with {made_by}): search with the model "
            "that made the index, or re-embed with this one (umt embed --overwrite)"
        )
    want = index.settings.get("model_fingerprint")
    got = model_fingerprint(model) if want is not None else None
    if got != want:
        raise InputError(
            f"{given}: not the model that made the index {index.root} (made with {made_by}; "
            f"weights fingerprint {got}, the index's {want}): search with "
            "that model (--checkpoint), or re-embed with this one (umt embed --overwrite)"
        )


def _settings(model: Any, checkpoint: str, num_frames: int, input_size: int, store: bool) -> dict:
    enc = model.vision_encoder
    where = None
    if checkpoint:  # a path is kept absolute; a released name (umt.models.released) as it is
        where = str(Path(checkpoint).resolve()) if Path(checkpoint).exists() else str(checkpoint)
    return {
        "version": INDEX_VERSION,
        "checkpoint": where,
        "model_fingerprint": model_fingerprint(model),
        "num_frames": int(num_frames),
        "input_size": int(input_size),
        "embed_dim": int(model.embed_dim),
        "vision_width": int(enc.embed_dim),
        "store_tokens": bool(store),
    }


def embed_videos(
    model: Any,
    videos: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    checkpoint: str = "",
    num_frames: int = 4,
    input_size: int = 224,
    batch_size: int = 16,
    chunk_size: int = 256,
    store_tokens: bool = False,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    num_workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Embed ``videos`` into the index folder ``out_dir`` (resuming a previous run of the same
    settings and videos). Unreadable videos are skipped, counted and listed. Returns a summary:
    ``videos``, ``embedded``, ``failed``, ``resumed_chunks``, ``seconds``."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    settings = _settings(model, checkpoint, num_frames, input_size, store_tokens)
    settings.update(chunk_size=int(chunk_size), videos=len(videos))
    meta_file, list_file = out / "index.json", out / "videos.txt"
    listing = "\n".join(videos) + "\n"
    checksums: dict[str, str] = {}  # chunk file name -> sha256, written after each chunk
    if meta_file.is_file() and not overwrite:
        try:
            old = json.loads(meta_file.read_text())
        except json.JSONDecodeError:
            old = None
        same = (
            old is not None
            and {k: old.get(k) for k in settings} == settings
            and list_file.is_file()
            and list_file.read_text() == listing
        )
        if not same:
            raise FileExistsError(
                f"{out}: holds an index of other videos or settings; pass --overwrite to "
                "replace it, or another -o folder"
            )
        checksums = dict(old.get("chunks") or {})
    elif out.exists() and any(out.iterdir()) and not meta_file.is_file() and not overwrite:
        raise FileExistsError(f"{out}: a folder that is not a umt index; give another -o folder")
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    if overwrite:
        for f in (out / "chunks").glob("chunk_*"):
            f.unlink()
    _atomic_write(meta_file, json.dumps({**settings, "chunks": checksums}, indent=1).encode())
    _atomic_write(list_file, listing.encode())

    from umt.data.retrieval import RetrievalVideoDataset, collate_retrieval
    from umt.utils.device import maybe_autocast

    model = model.eval().to(device)
    n_chunks = (len(videos) + chunk_size - 1) // chunk_size
    todo = []
    for k in range(n_chunks):
        path = _chunk_path(out, k)
        if path.is_file() and checksums.get(path.name) == sha256_file(path):
            continue
        if path.is_file() and path.name in checksums:
            say(f"{path}: damaged (its checksum differs), embedding it again")
        todo.append(k)
    resumed = n_chunks - len(todo)
    if resumed:
        say(f"resuming: {resumed} of {n_chunks} chunk(s) already embedded in {out}")
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(videos), initial=resumed * chunk_size, desc="embed", unit="video")
    failed_total = 0
    for k in todo:
        chunk = list(videos[k * chunk_size : (k + 1) * chunk_size])
        dataset = RetrievalVideoDataset(
            chunk, num_frames=num_frames, input_size=input_size, normalize=True
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=collate_retrieval,
        )
        feats = torch.zeros(len(chunk), num_frames, model.embed_dim, dtype=torch.float16)
        tokens = None
        ok = torch.zeros(len(chunk), dtype=torch.bool)
        failures: list[list[str]] = []
        for batch in loader:
            failures.extend([p, r] for _, p, r in batch["faults"])
            if batch["video"] is not None:
                with torch.no_grad(), maybe_autocast(torch.device(device), amp_dtype):
                    embeds, pooled = model.encode_vision(batch["video"].to(device))
                    f = F.normalize(model.vision_features(pooled).float(), dim=-1)  # [b, T, D]
                idx = batch["index"]
                feats[idx] = f.cpu().half()
                ok[idx] = True
                if store_tokens:
                    if tokens is None:
                        tokens = torch.zeros(len(chunk), *embeds.shape[1:], dtype=torch.float16)
                    tokens[idx] = embeds.float().cpu().half()
            if bar is not None:
                bar.update(len(batch["index"]) + len(batch["faults"]))
        tensors = {"features": feats.contiguous(), "ok": ok}
        if tokens is not None:
            tensors["tokens"] = tokens.contiguous()
        meta = {"paths": json.dumps(chunk), "failed": json.dumps(failures)}
        tmp = _chunk_path(out, k).with_suffix(".tmp")
        try:
            save_file(tensors, str(tmp), metadata=meta)
            checksums[_chunk_path(out, k).name] = sha256_file(tmp)
            os.replace(tmp, _chunk_path(out, k))
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        _atomic_write(meta_file, json.dumps({**settings, "chunks": checksums}, indent=1).encode())
        failed_total += len(failures)
        for p, r in failures:
            say(f"skipped {p}: {r}")
    if bar is not None:
        bar.close()
    index = load_index(out)
    return {
        "index": str(out),
        "videos": len(videos),
        "embedded": len(index),
        "failed": len(index.failed),
        "resumed_chunks": resumed,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_index(root: str | os.PathLike) -> VideoIndex:
    """Read an index folder written by :func:`embed_videos`, each chunk checked against the
    sha256 that ``index.json`` records for it (indexes of version 1 have none)."""
    from safetensors import safe_open

    root = Path(root)
    meta_file = root / "index.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{root}: not a umt index (no index.json); make one with umt embed")
    try:
        settings = json.loads(meta_file.read_text())
    except json.JSONDecodeError:
        raise InputError(
            f"{meta_file}: damaged (not JSON); rebuild with umt embed --overwrite"
        ) from None
    if settings.get("version") not in (1, INDEX_VERSION):
        raise InputError(
            f"{root}: index version {settings.get('version')} is not one this umt reads "
            f"(1 or {INDEX_VERSION}); rebuild it with umt embed --overwrite"
        )
    checksums = settings.get("chunks") if settings["version"] >= 2 else None
    n_chunks = (int(settings["videos"]) + settings["chunk_size"] - 1) // settings["chunk_size"]
    paths: list[str] = []
    feats: list[torch.Tensor] = []
    failed: list[tuple[str, str]] = []
    tokens: dict[int, tuple[int, int]] = {}
    missing = 0
    for k in range(n_chunks):
        path = _chunk_path(root, k)
        if not path.is_file() or (checksums is not None and path.name not in checksums):
            missing += 1
            continue
        if checksums is not None and sha256_file(path) != checksums[path.name]:
            raise InputError(
                f"{path}: damaged index chunk (its sha256 differs from the one in "
                f"{meta_file.name}); re-run the same umt embed command: it embeds this chunk again"
            )
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata()
                ok = f.get_tensor("ok")
                chunk_feats = f.get_tensor("features")
        except Exception as err:  # noqa: BLE001 - a damaged chunk: say which, how to fix
            raise InputError(
                f"{path}: damaged index chunk ({err}); delete it and rerun umt embed to redo it"
            ) from None
        chunk_paths = json.loads(meta["paths"])
        failed.extend(tuple(x) for x in json.loads(meta["failed"]))
        for row in ok.nonzero().flatten().tolist():
            tokens[len(paths)] = (k, row)
            paths.append(chunk_paths[row])
        feats.append(chunk_feats[ok].float())
    if missing:
        raise InputError(
            f"{root}: {missing} of {n_chunks} chunk(s) not embedded yet (an interrupted umt "
            "embed); rerun the same umt embed command to finish it"
        )
    features = torch.cat(feats) if feats else torch.zeros(0, settings["num_frames"], 1)
    return VideoIndex(root, paths, features, settings, failed, tokens)


# --------------------------------------------------------------------------- queries
@dataclass(frozen=True)
class Hit:
    """One search result: the video, its rank (1-based), ITC score and ITM logit (re-ranked)."""

    rank: int
    path: str
    score: float
    itc: float
    itm: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": self.path, "score": self.score, "itc": self.itc,
                "itm": self.itm}  # fmt: skip


def text_features(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int = 32,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(l2-normalised text features ``[Q, D]``, text-layer states ``[Q, L, C]``, mask ``[Q, L]``)."""
    ids, mask = tokenizer(list(texts), max_length=max_length)
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        embeds, pooled = model.encode_text(ids, mask)
        feats = F.normalize(model.text_features(pooled).float(), dim=-1)
    return feats, embeds, mask


def check_queries(queries: Sequence[str]) -> None:
    """Refuse (``ValueError``) no queries, or one with no words once cleaned as captions are
    (blank, or punctuation only): it would rank every video by an empty text."""
    from umt.text import clean_caption

    if not queries:
        raise InputError("no query given; give the text to search for")
    for i, query in enumerate(queries):
        if not clean_caption(str(query)):
            raise InputError(
                f"query {i + 1} ({query!r}) is empty once cleaned of blanks and punctuation; "
                "give the words to search for"
            )


def search(
    index: VideoIndex,
    model: Any,
    tokenizer: Any,
    queries: Sequence[str],
    top_k: int = 10,
    rerank: bool = False,
    rerank_k: int | None = None,
    max_length: int = 32,
    device: torch.device | str = "cpu",
    timings: dict[str, float] | None = None,
    checkpoint: str | os.PathLike = "",
) -> list[list[Hit]]:
    """The ``top_k`` videos of each query by ITC (mean over frames of the cosine); with
    ``rerank``, the ITC top ``rerank_k`` (default ``top_k``) re-scored by the ITM match logit.
    ``timings`` (when given) receives the seconds spent per stage. A blank query, or a
    model other than the index's (:func:`check_model`; ``checkpoint`` names the model in its
    message), is refused."""
    if len(index) == 0:
        raise InputError(f"{index.root}: the index holds no video")
    check_queries(queries)
    check_model(index, model, checkpoint)
    model = model.eval().to(device)
    t0 = time.perf_counter()
    q_feats, q_embeds, q_mask = text_features(model, tokenizer, queries, max_length, device)
    t1 = time.perf_counter()
    scores = torch.einsum("ntd,qd->qnt", index.features, q_feats.cpu()).mean(-1)  # [Q, N]
    k = min(max(top_k, rerank_k or 0) if rerank else top_k, len(index))
    top_scores, top_rows = scores.topk(k, dim=1)
    t2 = time.perf_counter()
    results: list[list[Hit]] = []
    for q in range(len(queries)):
        rows = top_rows[q].tolist()
        itc = top_scores[q].tolist()
        if not rerank:
            hits = [Hit(i + 1, index.paths[r], s, s) for i, (r, s) in enumerate(zip(rows, itc))]
        else:
            tokens = _tokens_for(index, model, rows, device)
            n = tokens.shape[0]
            with torch.no_grad():
                logits = (
                    model.itm_logits(
                        q_embeds[q : q + 1].expand(n, -1, -1),
                        q_mask[q : q + 1].expand(n, -1),
                        tokens.to(device),
                    )[:, 1]
                    .float()
                    .cpu()
                )
            order = logits.argsort(descending=True).tolist()
            hits = [
                Hit(i + 1, index.paths[rows[j]], float(logits[j]), itc[j], float(logits[j]))
                for i, j in enumerate(order[:top_k])
            ]
        results.append(hits[:top_k])
    if timings is not None:
        timings.update(
            text_s=t1 - t0, itc_s=t2 - t1, rerank_s=time.perf_counter() - t2, videos=len(index)
        )
    return results


def _tokens_for(index: VideoIndex, model: Any, rows: Sequence[int], device: Any) -> torch.Tensor:
    """Video tokens of some index rows: stored ones, or recomputed from the files."""
    stored = index.video_tokens(rows)
    if stored is not None:
        return stored
    from umt.data.retrieval import RetrievalVideoDataset, collate_retrieval

    s = index.settings
    dataset = RetrievalVideoDataset(
        [index.paths[r] for r in rows],
        num_frames=s["num_frames"],
        input_size=s["input_size"],
        normalize=True,
    )
    batch = collate_retrieval([dataset[i] for i in range(len(dataset))])
    if batch["faults"]:
        _, path, reason = batch["faults"][0]
        raise InputError(f"{path}: cannot re-rank, the video no longer reads ({reason})")
    with torch.no_grad():
        embeds, _ = model.encode_vision(batch["video"].to(device))
    return embeds.float()


# --------------------------------------------------------------------------- zero-shot
ZERO_SHOT_BATCH = 256  # prompts per text forward


def class_text_features(
    model: Any,
    tokenizer: Any,
    class_names: Sequence[str],
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    max_length: int = 32,
    device: torch.device | str = "cpu",
    batch_size: int = ZERO_SHOT_BATCH,
    progress: bool = False,
) -> torch.Tensor:
    """Each class's text feature ``[K, D]`` (float32, on the CPU): the l2-normalised mean of
    its prompts' normalised features (``templates``). Prompts go through the text encoder
    ``batch_size`` at a time (whole classes per batch, at least one); only the features are
    kept, so memory grows with ``K x D``, not with the text states. ``progress`` shows a bar
    on stderr."""
    if not templates:
        raise InputError("zero-shot classification needs at least one prompt template")
    model = model.eval().to(device)
    per_batch = max(1, int(batch_size) // len(templates))
    out = torch.empty(len(class_names), int(model.embed_dim), dtype=torch.float32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(class_names), desc="class names", unit="class")
    for start in range(0, len(class_names), per_batch):
        names = class_names[start : start + per_batch]
        prompts = [t.format(name) for name in names for t in templates]
        f, _, _ = text_features(model, tokenizer, prompts, max_length, device)
        f = f.reshape(len(names), len(templates), -1).mean(1)
        out[start : start + len(names)] = F.normalize(f, dim=-1).cpu()
        if bar is not None:
            bar.update(len(names))
    if bar is not None:
        bar.close()
    return out


def zero_shot_classify(
    model: Any,
    tokenizer: Any,
    video: torch.Tensor,
    class_names: Sequence[str],
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    max_length: int = 32,
    device: torch.device | str = "cpu",
    class_features: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class probabilities ``[B, num_classes]`` of videos ``[B, 3, T, H, W]`` (normalised)
    from class names alone: each class's text feature is the mean of its prompts' normalised
    features (``templates``; :func:`class_text_features`, or ``class_features`` computed
    once for many videos), the score the mean over frames of the cosine, divided by the
    model's learnt temperature, softmax over the classes."""
    model = model.eval().to(device)
    if class_features is None:
        class_features = class_text_features(
            model, tokenizer, class_names, templates, max_length, device
        )
    classes = class_features.to(device)  # [K, D]
    with torch.no_grad():
        _, pooled = model.encode_vision(video.to(device))
        v = F.normalize(model.vision_features(pooled).float(), dim=-1)  # [B, T, D]
        logits = torch.einsum("btd,kd->bkt", v, classes).mean(-1) / model.temp.float()
    return logits.softmax(-1).cpu()


def read_class_names(path: str | os.PathLike, option: str = "--zero-shot") -> list[str]:
    """The class names of a text file, one per line (blank lines skipped); at least two."""
    labels = Path(path)
    if not labels.is_file():
        raise FileNotFoundError(f"{option} {labels}: file not found")
    names = [n.strip() for n in read_text(labels).splitlines() if n.strip()]
    if len(names) < 2:
        raise InputError(f"{option} {labels}: needs at least two class names, one per line")
    return names


@dataclass
class ZeroShotPrediction:
    """One video's zero-shot classes: ``top`` (class name, probability), best first; or the
    ``error`` that kept the video from being read (``top`` empty)."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def zero_shot_classify_videos(
    model: Any,
    tokenizer: Any,
    videos: Sequence[str],
    class_names: Sequence[str],
    *,
    input_size: int | None = None,
    top_k: int = 5,
    device: torch.device | str = "cpu",
    progress: bool = True,
    class_features: torch.Tensor | None = None,
) -> Iterator[ZeroShotPrediction]:
    """Classify each video file (frames from the middle of the model's T segments, resized to
    ``input_size``, default the model's) from ``class_names`` alone (:func:`zero_shot_classify`,
    the class features computed once, or ``class_features`` ``[K, D]`` from
    :func:`class_text_features` kept by a caller that classifies again and again); one
    :class:`ZeroShotPrediction` per video, in order, as each is done."""
    from umt.data.retrieval import RetrievalVideoDataset

    enc = model.vision_encoder
    dataset = RetrievalVideoDataset(
        list(videos),
        num_frames=enc.num_frames,
        input_size=input_size or enc.img_size,
        normalize=True,
    )
    classes = class_features
    if classes is None:
        classes = class_text_features(
            model, tokenizer, class_names, device=device, progress=progress
        )
    for i in range(len(dataset)):
        sample = dataset[i]
        if "fault" in sample:
            yield ZeroShotPrediction(sample["path"], error=sample["fault"])
            continue
        probs = zero_shot_classify(
            model,
            tokenizer,
            sample["video"][None],
            class_names,
            device=device,
            class_features=classes,
        )[0]
        top = probs.topk(min(top_k, len(class_names)))
        yield ZeroShotPrediction(
            sample["path"],
            [(class_names[j], float(p)) for p, j in zip(top.values.tolist(), top.indices.tolist())],
        )
