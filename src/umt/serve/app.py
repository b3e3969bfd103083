"""The web app of ``umt serve``: one static page and a JSON API over loaded models.

Routes (every error answers ``{"error": "one line"}`` with a 4xx / 5xx status)::

    GET  /                              the page (static/index.html: plain JavaScript, offline)
    GET  /api/info                      the index, the model, how uploads are classified, the
                                        teacher of the semantic mask
    GET  /api/search?q=TEXT&k=8&rerank=false
                                        ranked hits: rank, row, name, path, score, itc, itm,
                                        and the URLs of the video, its thumbnail and its mask
    GET  /api/videos/{row}              an indexed video, by index row only (no path is ever
                                        taken from a request); HTTP range requests answer 206
    GET  /api/videos/{row}/thumb.jpg    its middle frame as JPEG (kept in memory)
    GET  /api/videos/{row}/mask.png     its semantic mask (``umt visualize-mask``'s figure)
    POST /api/classify                  an uploaded clip (form field ``file``): its top 5
    POST /api/mask                      an uploaded clip's semantic mask, PNG

The models are loaded before the app is made (:class:`Services`); requests that run a model
take turns (one lock), thumbnails and files do not wait for them.
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from umt.errors import InputError, UmtError
from umt.infer.search import VideoIndex, search

__all__ = [
    "MAX_UPLOAD_BYTES",
    "SEARCH_TOP_K",
    "Services",
    "UploadClassifier",
    "create_app",
    "fine_tuned_classifier",
    "zero_shot_classifier",
]

SEARCH_TOP_K = 8
"""Results per search on the page (the API takes ``k`` up to 100)."""
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
"""The largest clip ``/api/classify`` and ``/api/mask`` take (larger: HTTP 413)."""
CLASSIFY_TOP_K = 5
THUMB_WIDTH = 320
STATIC = resources.files("umt.serve") / "static"
Clip = Annotated[UploadFile, File(description="a video clip")]


@dataclass
class UploadClassifier:
    """How an uploaded clip is classified: ``kind`` ``"fine-tuned"`` (``model``, a
    :class:`~umt.models.VideoViT` with a head; ``names`` None when unknown: class indices are
    shown) or ``"zero-shot"`` (the video-text model against ``features``, the ``[K, D]`` text
    features of ``names``). ``description`` says which on the page."""

    kind: str
    description: str
    names: list[str] | None
    model: Any = None
    features: torch.Tensor | None = None


def fine_tuned_classifier(checkpoint: str, labels: str | None = None) -> UploadClassifier:
    """A fine-tuned classifier checkpoint (path or released name, as ``umt classify
    --checkpoint``) with its class names (``labels``, else the shipped list matching the head)."""
    from umt.infer.classify import load_classifier, resolve_class_names

    model = load_classifier(checkpoint)
    names = resolve_class_names(model.num_classes, labels)
    return UploadClassifier(
        "fine-tuned",
        f"fine-tuned classifier {checkpoint} ({model.num_classes} classes; names: {names.source})",
        names.names,
        model=model,
    )


def zero_shot_classifier(
    model: Any, tokenizer: Any, labels: str, checkpoint: str, device: torch.device | str = "cpu"
) -> UploadClassifier:
    """Zero-shot classification over the class names of ``labels`` (one per line, as ``umt
    classify --zero-shot``) with the video-text ``model``; the class features computed once."""
    from umt.infer.search import class_text_features, read_class_names

    names = read_class_names(labels, "--labels")
    features = class_text_features(model, tokenizer, names, device=device)
    return UploadClassifier(
        "zero-shot",
        f"zero-shot over the {len(names)} class names of {labels} with the video-text "
        f"model {checkpoint}",
        names,
        features=features,
    )


@dataclass
class Services:
    """What the app serves, loaded before it starts: the ``index`` and its video-text
    ``model`` / ``tokenizer`` (``checkpoint`` names it), an optional :class:`UploadClassifier`,
    and the semantic mask's recipe (``mask_config``) with its built ``teacher``
    ``(module, description)`` (None: no mask)."""

    index: VideoIndex
    model: Any
    tokenizer: Any
    checkpoint: str
    device: torch.device | str = "cpu"
    classifier: UploadClassifier | None = None
    mask_config: Any = None
    teacher: tuple[Any, str] | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES


def _line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _status(err: BaseException) -> int:
    """400 a bad request (InputError); 422 a clip that does not decode; 404 a file gone since
    it was indexed; 500 the machine."""
    from umt.data.decode import VideoDecodeError

    if isinstance(err, InputError):
        return 400
    if isinstance(err, VideoDecodeError):
        return 422
    if isinstance(err, FileNotFoundError):
        return 404
    return 500


def _jpeg(frame: Any) -> bytes:
    from PIL import Image

    image = Image.fromarray(frame)
    if image.width > THUMB_WIDTH:
        image = image.resize((THUMB_WIDTH, max(1, round(image.height * THUMB_WIDTH / image.width))))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _middle_frame(path: str, name: str) -> bytes:
    """The middle frame of a video as JPEG bytes."""
    from umt.data.decode import probe_video, read_frames

    info = probe_video(path, name=name)
    return _jpeg(read_frames(path, [max(info.num_frames, 1) // 2], name=name)[0])


def create_app(services: Services) -> FastAPI:
    """The FastAPI app of ``umt serve`` over loaded ``services`` (see the module's routes)."""
    app = FastAPI(title="umt serve", docs_url=None, redoc_url=None, openapi_url=None)
    index = services.index
    rows: dict[str, int] = {}
    for row, path in enumerate(index.paths):
        rows.setdefault(path, row)
    model_lock = threading.Lock()

    @contextmanager
    def turn() -> Iterator[None]:
        with model_lock, torch.inference_mode():
            yield

    # ------------------------------------------------------------------ errors: one line
    @app.exception_handler(UmtError)
    @app.exception_handler(OSError)
    async def _known_error(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"error": _line(err)}, status_code=_status(err))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and Starlette's own 404 / 405
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        said = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in err.errors()]
        return JSONResponse({"error": "; ".join(said) or "bad request"}, status_code=422)

    # ------------------------------------------------------------------ the page
    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        c = services.classifier
        return {
            "index": str(index.root),
            "videos": len(index),
            "unreadable": len(index.failed),
            "checkpoint": services.checkpoint,
            "num_frames": int(index.settings["num_frames"]),
            "rerank_tokens_stored": bool(index.settings.get("store_tokens")),
            "classify": None
            if c is None
            else {
                "kind": c.kind,
                "description": c.description,
                "classes": None if c.names is None else len(c.names),
            },
            "mask": None if services.teacher is None else services.teacher[1],
            "search_top_k": SEARCH_TOP_K,
        }

    # ------------------------------------------------------------------ search
    def video_row(row: int) -> str:
        """The file of index row ``row``, which must be there (else HTTP 404, saying why)."""
        if not 0 <= row < len(index):
            raise HTTPException(404, f"no video {row}: the index holds rows 0 to {len(index) - 1}")
        path = index.paths[row]
        if not Path(path).is_file():
            where = (
                "indexed, since moved or deleted"
                if Path(path).is_absolute()
                else f"a relative path as umt embed stored it, not found from {Path.cwd()}: start "
                "umt serve in the folder umt embed ran in"
            )
            raise HTTPException(404, f"{path}: no such file ({where})")
        return path

    def urls(row: int) -> dict[str, str]:
        base = f"/api/videos/{row}"
        return {"video": base, "thumbnail": f"{base}/thumb.jpg", "mask": f"{base}/mask.png"}

    @app.get("/api/search")
    def run_search(
        q: Annotated[str, Query(max_length=1000, description="the text to search for")],
        k: Annotated[int, Query(ge=1, le=100, description="results")] = SEARCH_TOP_K,
        rerank: Annotated[bool, Query(description="re-rank the top k with the ITM head")] = False,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        with turn():
            hits = search(
                index,
                services.model,
                services.tokenizer,
                [q],
                top_k=k,
                rerank=rerank,
                device=services.device,
                checkpoint=services.checkpoint,
            )[0]
        out = []
        for h in hits:
            row = rows[h.path]
            out.append(
                {**h.to_json(), "row": row, "name": Path(h.path).name, **urls(row)}
            )  # fmt: skip
        ms = (time.perf_counter() - t0) * 1000
        return {"query": q, "rerank": rerank, "ms": round(ms, 1), "hits": out}

    # ------------------------------------------------------------------ indexed videos
    @app.get("/api/videos/{row}")
    def video(row: int) -> FileResponse:
        path = Path(video_row(row))
        return FileResponse(path, filename=path.name, content_disposition_type="inline")

    @lru_cache(maxsize=4096)
    def thumbnail(row: int) -> bytes:
        path = video_row(row)
        return _middle_frame(path, path)

    @app.get("/api/videos/{row}/thumb.jpg")
    def thumb(row: int) -> Response:
        return Response(thumbnail(row), media_type="image/jpeg")

    def mask_png(path: str, title: str) -> bytes:
        if services.teacher is None:
            raise HTTPException(
                404, "no semantic mask: umt serve was started with --no-mask; start it without"
            )
        from umt.train.visualize import visualize_mask

        out = io.BytesIO()
        with turn():
            visualize_mask(services.mask_config, path, out, teacher=services.teacher, title=title)
        return out.getvalue()

    @lru_cache(maxsize=64)
    def indexed_mask(row: int) -> bytes:
        path = video_row(row)
        return mask_png(path, Path(path).name)

    @app.get("/api/videos/{row}/mask.png")
    def mask(row: int) -> Response:
        return Response(indexed_mask(row), media_type="image/png")

    # ------------------------------------------------------------------ uploads
    @contextmanager
    def uploaded(file: UploadFile) -> Iterator[tuple[str, str]]:
        """The upload saved to a temporary file, checked to be a readable video: (its path,
        the name it was sent under)."""
        from umt.data.decode import probe_video

        name = Path(file.filename or "upload").name or "upload"
        suffix = Path(name).suffix.lower()
        if not (suffix[1:].isalnum() and len(suffix) <= 6):
            suffix = ".bin"
        with tempfile.TemporaryDirectory(prefix="umt-serve-") as tmp:
            dest = Path(tmp) / f"upload{suffix}"
            size = 0
            with dest.open("wb") as f:
                while chunk := file.file.read(1 << 20):
                    size += len(chunk)
                    if size > services.max_upload_bytes:
                        limit = services.max_upload_bytes // (1024 * 1024)
                        raise HTTPException(
                            413, f"{name}: larger than {limit} MB; send a shorter clip"
                        )
                    f.write(chunk)
            if size == 0:
                raise HTTPException(400, f"{name}: an empty file; choose a video clip")
            probe_video(str(dest), name=name)  # a file that is no video: 422, naming it
            yield str(dest), name

    @app.post("/api/classify")
    def classify(file: Clip) -> dict[str, Any]:
        c = services.classifier
        if c is None:
            raise HTTPException(
                404,
                "no classifier: start umt serve with --classifier CKPT (fine-tuned) or "
                "--labels FILE (zero-shot class names)",
            )
        with uploaded(file) as (path, name):
            t0 = time.perf_counter()
            with turn():
                top, error = _classify(services, c, path)
        if error is not None:
            raise HTTPException(422, f"{name}: cannot classify: {error.replace(path, name)}")
        ms = (time.perf_counter() - t0) * 1000
        return {"name": name, "kind": c.kind, "description": c.description, "ms": round(ms, 1),
                "top": top}  # fmt: skip

    @app.post("/api/mask")
    def upload_mask(file: Clip) -> Response:
        with uploaded(file) as (path, name):
            png = mask_png(path, name)
        return Response(png, media_type="image/png")

    return app


def _classify(
    services: Services, c: UploadClassifier, path: str
) -> tuple[list[dict[str, Any]], str | None]:
    """The top classes of one clip (label, score), or the error that kept it from being read."""
    if c.kind == "fine-tuned":
        from umt.infer.classify import classify_videos

        result = next(
            classify_videos(c.model, [path], c.names, top_k=CLASSIFY_TOP_K, device=services.device)
        )
        if not result.ok:
            return [], result.error
        top = [
            {"label": p.label if p.label is not None else f"class {p.index}", "score": p.score}
            for p in result.top
        ]
        return top, None
    from umt.infer.search import zero_shot_classify_videos

    pred = next(
        zero_shot_classify_videos(
            services.model,
            services.tokenizer,
            [path],
            c.names or [],
            top_k=CLASSIFY_TOP_K,
            device=services.device,
            progress=False,
            class_features=c.features,
        )
    )
    if pred.error is not None:
        return [], pred.error
    return [{"label": label, "score": score} for label, score in pred.top], None
