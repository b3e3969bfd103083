"""``umt classify``, ``umt embed``, ``umt search``, ``umt ask``: a model on your own videos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from umt.cli._common import (
    Note,
    add_amp,
    add_classifier_sizes,
    add_device,
    add_num_frames,
    add_qa_text_options,
    add_size_options,
    add_tokenizer,
    count_at_least,
    device_and_amp,
    model_sizes,
    noted_warnings,
    qa_text_settings,
    stderr_note,
    views,
)
from umt.errors import InputError

__all__ = [
    "DEFAULT_QA_RECIPE",
    "add_ask",
    "add_classify",
    "add_embed",
    "add_search",
    "load_index_and_model",
    "load_video_text_model",
]

_CLASSIFY_EPILOG = """\
output: for each video a block "VIDEO:" then one "  SCORE  LABEL" line per class (score = the
softmax averaged over the views); with --json one JSON object per line and video:
{"path", "top_k": [{"label", "index", "score"}], "views"} or {"path", "error"}.
Class names: --labels FILE (one name per line, a JSON list or a JSON {name: index}); without
it, the names shipped for Kinetics-400/600/700/710, SSv2 and Moments in Time are used when the
head's class count matches (400, 600, 700, 710, 174, 339), else the class indices are printed.
Notes and warnings go to stderr. Exit 0: all videos classified; 1: some video could not be
read (one line each on stderr, the others still run); 2: bad arguments or checkpoint.
"""


def add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="top-k classes of your videos with a fine-tuned classifier",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Classify each VIDEO with a fine-tuned UMT classifier (an official fine-tuned "
            ".pth or a umt checkpoint): decode its test views (default one centre view, "
            "1x1; --views 4x3 for the official Kinetics test), average the per-view softmax "
            "and print the top-k classes."
        ),
        epilog=_CLASSIFY_EPILOG,
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (or images)")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="fine-tuned classifier: a checkpoint path or a released name such as umt-b16-k400 "
        "('umt models'); with --zero-shot a video-text model",
    )
    p.add_argument("--labels", default=None, metavar="FILE", help="class names of the head")
    p.add_argument(
        "--zero-shot",
        default=None,
        metavar="LABELS.txt",
        help="classify with a video-text model from class names alone (one per line), "
        "each put in prompt templates and matched with the video (ITC)",
    )
    p.add_argument(
        "--top-k", type=count_at_least(1), default=5, help="classes per video (default: 5)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line and video")
    p.add_argument(
        "--views",
        type=views,
        default=(1, 1),
        metavar="CLIPSxCROPS",
        help="temporal clips x spatial crops averaged (default: 1x1; official test: 4x3, "
        "SSv2 2x3 with --sampling ssv2)",
    )
    p.add_argument(
        "--sampling",
        default="sparse",
        choices=["sparse", "ssv2", "dense"],
        help="test-clip frame sampling (default: sparse, the official Kinetics/MiT test)",
    )
    add_classifier_sizes(p)
    add_device(p)
    add_amp(p)
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (--zero-shot class names)"
    )
    p.set_defaults(handler=_run_classify)


def _run_classify(args: argparse.Namespace) -> int:
    from umt.infer.classify import (
        classify_videos,
        format_result,
        load_classifier,
        resolve_class_names,
    )
    from umt.models.released import checkpoint_exists, release_hint

    note = stderr_note("classify")
    if not checkpoint_exists(args.checkpoint):
        hint = release_hint(args.checkpoint)
        raise FileNotFoundError(f"{args.checkpoint}: checkpoint not found{hint}")
    if args.zero_shot is not None:
        return _zero_shot_classify(args, note)
    if args.labels is not None and not Path(args.labels).is_file():
        raise FileNotFoundError(f"--labels {args.labels}: file not found")
    device, amp = device_and_amp(args)
    with noted_warnings(note):
        model = load_classifier(args.checkpoint, args.num_frames, args.input_size, args.num_heads)
    names = resolve_class_names(model.num_classes, args.labels)
    if names.names is None:
        note(f"class names {names.source}: printing class indices (give --labels FILE)")
    elif args.labels is None:
        note(f"class names: {names.source}")
    failed = 0
    results = classify_videos(
        model,
        args.videos,
        class_names=names.names,
        top_k=args.top_k,
        views=args.views,
        device=device,
        sampling=args.sampling,
        autocast_dtype=amp,
    )
    for result in results:
        if not result.ok:
            failed += 1
            note(f"{result.path}: cannot classify: {result.error}")
            if args.json:
                print(result.to_json(), flush=True)
            continue
        print(result.to_json() if args.json else format_result(result), flush=True)
    if failed:
        note(f"{failed} of {len(args.videos)} videos could not be classified")
    return 1 if failed else 0


def load_video_text_model(checkpoint: str, num_frames: int | None, note: Note) -> tuple[Any, Any]:
    """A video-text model (official multimodal file or umt's, no teacher) and its tokenizer;
    assumed sizes are noted in one line each."""
    from umt.evaluate.retrieval import load_video_text, resolve_tokenizer

    with noted_warnings(note):
        model = load_video_text(checkpoint, num_frames)
    return model, resolve_tokenizer(checkpoint, model)


def _zero_shot_classify(args: argparse.Namespace, note: Note) -> int:
    from umt.infer.search import read_class_names, zero_shot_classify_videos
    from umt.utils.device import resolve_device

    names = read_class_names(args.zero_shot)
    device = resolve_device(args.device)
    model, tokenizer = load_video_text_model(args.checkpoint, args.num_frames, note)
    failed = 0
    for pred in zero_shot_classify_videos(
        model,
        tokenizer,
        args.videos,
        names,
        input_size=args.input_size,
        top_k=args.top_k,
        device=device,
        progress=not args.no_progress,
    ):
        if pred.error is not None:
            failed += 1
            note(f"{pred.path}: cannot classify: {pred.error}")
        elif args.json:
            print(json.dumps({"path": pred.path, "top": [
                {"label": n, "score": round(p, 6)} for n, p in pred.top]}), flush=True)  # fmt: skip
        else:
            print(pred.path, flush=True)
            for n, p in pred.top:
                print(f"  {p:7.2%}  {n}", flush=True)
    if failed:
        note(f"{failed} of {len(args.videos)} videos could not be classified")
    return 1 if failed else 0


# --------------------------------------------------------------------------- embed / search
def add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed your videos into a searchable index (for umt search)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Decode each video (T frames from the middle of T equal segments, resized to the "
            "model's input), embed it with a video-text model and write the per-frame features "
            "into an index folder, chunk by chunk: an interrupted run resumes when run again. "
            "Unreadable videos are skipped and listed."
        ),
        epilog=(
            "examples:\n"
            "  umt embed videos/ --checkpoint b16_25m.pth -o index/\n"
            "  umt embed list.txt --checkpoint runs/umt-tiny-synthetic-stage2-.../best -o index/\n"
            '  umt search "a person surfing" --index index/ --rerank'
        ),
    )
    p.add_argument(
        "videos", nargs="+", metavar="VIDEOS_OR_LIST", help="video files, folders or list files"
    )
    p.add_argument(
        "--checkpoint", required=True, help="video-text model (stage 2): a path or a released name"
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="index folder")
    p.add_argument(
        "--num-frames",
        type=count_at_least(1),
        default=None,
        help="frames per video (default: the model's)",
    )
    p.add_argument("--batch-size", type=count_at_least(1), default=16, help="videos per batch")
    p.add_argument(
        "--store-tokens",
        action="store_true",
        help="also store the video tokens, so --rerank needs no decoding (large: N x C per video)",
    )
    p.add_argument("--workers", type=count_at_least(0), default=2, help="decoding processes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index")
    add_device(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from umt.infer.search import embed_videos, list_videos
    from umt.outputs import check_writable
    from umt.utils.device import resolve_amp, resolve_device

    note = stderr_note("embed")

    check_writable(args.output, "index", folder=True)  # before the model loads
    videos = list_videos(args.videos)
    device = resolve_device(args.device)
    model, _ = load_video_text_model(args.checkpoint, args.num_frames, note)
    enc = model.vision_encoder
    summary = embed_videos(
        model,
        videos,
        args.output,
        checkpoint=args.checkpoint,
        num_frames=enc.num_frames,
        input_size=enc.img_size,
        batch_size=args.batch_size,
        store_tokens=args.store_tokens,
        device=device,
        amp_dtype=resolve_amp("auto", device),
        num_workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        say=note,
    )
    print(
        f"embedded {summary['embedded']} of {summary['videos']} videos into {summary['index']}"
        + (f" ({summary['failed']} unreadable, skipped)" if summary["failed"] else "")
    )
    print(json.dumps(summary))
    return 0


def add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="find the videos of an index that match a text",
        description=(
            "Rank the videos of an index (umt embed) for each QUERY by the ITC similarity "
            "(mean over frames of the cosine); --rerank re-scores the top --rerank-k with the "
            "ITM head (its match logit), as the official retrieval re-ranking."
        ),
    )
    p.add_argument("queries", nargs="+", metavar="QUERY", help="text queries")
    p.add_argument("--index", required=True, metavar="DIR", help="index folder of umt embed")
    p.add_argument("--top-k", type=count_at_least(1), default=10, help="results per query")
    p.add_argument("--rerank", action="store_true", help="re-rank the top with the ITM head")
    p.add_argument(
        "--rerank-k",
        type=count_at_least(1),
        default=None,
        help="videos re-ranked (default: top-k)",
    )
    p.add_argument(
        "--checkpoint", default=None, help="the model (default: the one the index was made with)"
    )
    p.add_argument(
        "--max-text-len", type=count_at_least(3), default=32, help="tokens per query (default 32)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per query")
    add_device(p)
    p.set_defaults(handler=_run_search)


def load_index_and_model(
    index_dir: str, checkpoint: str | None, note: Note
) -> tuple[Any, Any, Any, str]:
    """(the index of ``umt embed`` in ``index_dir``, its video-text model, the tokenizer, the
    checkpoint's name): ``checkpoint``, else the one the index records. An index of an older
    umt is noted (not verified); a model that is not found is one line."""
    from umt.infer.search import load_index
    from umt.models.released import checkpoint_exists

    index = load_index(index_dir)
    if index.settings["version"] < 2:
        note(
            f"{index_dir}: an index of an older umt, without model fingerprint or chunk "
            "checksums (not verified); umt embed --overwrite rebuilds it with them"
        )
    checkpoint = checkpoint or index.settings.get("checkpoint")
    if not checkpoint_exists(checkpoint):
        raise FileNotFoundError(
            f"{index_dir}: the index's model {checkpoint} is not found; pass --checkpoint"
        )
    model, tokenizer = load_video_text_model(checkpoint, index.settings["num_frames"], note)
    return index, model, tokenizer, str(checkpoint)


def _run_search(args: argparse.Namespace) -> int:
    import time

    from umt.infer.search import check_queries, search
    from umt.utils.device import resolve_device

    note = stderr_note("search")

    check_queries(args.queries)
    index, model, tokenizer, checkpoint = load_index_and_model(args.index, args.checkpoint, note)
    device = resolve_device(args.device)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    results = search(
        index,
        model,
        tokenizer,
        args.queries,
        top_k=args.top_k,
        rerank=args.rerank,
        rerank_k=args.rerank_k,
        max_length=args.max_text_len,
        device=device,
        timings=timings,
        checkpoint=checkpoint,
    )
    per_query = (time.perf_counter() - t0) / len(args.queries)
    for query, hits in zip(args.queries, results):
        if args.json:
            print(json.dumps({"query": query, "hits": [h.to_json() for h in hits]}), flush=True)
            continue
        print(f"{query}")
        for h in hits:
            extra = f"  (itc {h.itc:.4f})" if h.itm is not None else ""
            print(f"  {h.rank:3d}. {h.score:8.4f}  {h.path}{extra}")
    note(
        f"{len(index)} videos; {per_query * 1000:.0f} ms per query "
        f"(text {timings['text_s'] * 1000:.0f} ms, ITC {timings['itc_s'] * 1000:.0f} ms"
        + (f", re-rank {timings['rerank_s'] * 1000:.0f} ms" if args.rerank else "")
        + " in all)"
    )
    return 0


# --------------------------------------------------------------------------- ask
DEFAULT_QA_RECIPE = "umt-tiny-synthetic-qa"
"""The recipe whose latest run ``umt ask`` answers with when no --checkpoint is given."""


def add_ask(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ask",
        help="answer questions about your video with a fine-tuned QA model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Answer each QUESTION about VIDEO with a video QA model: the clip (frames from the "
            "middle of equal segments, as the official test) and the question go through the "
            "video encoder and the question encoder, and the answer decoder ranks the model's "
            "answer list; prints the top answers with their probabilities."
        ),
        epilog=(
            "checkpoint: umt's QA checkpoint folder (from 'umt finetune' with a QA recipe; its\n"
            "answer_list.json, vocabulary and qa.json lie beside the weights), an official\n"
            "QA .pth or a released one (umt-b16-msrvtt-qa, ...: 'umt models') with --answers.\n"
            "Default: the best (else the latest) checkpoint of the\n"
            f"latest '{DEFAULT_QA_RECIPE}' run.\n\n"
            "examples:\n"
            f"  umt finetune --config {DEFAULT_QA_RECIPE}\n"
            '  umt ask clip.mp4 "what colour is the object" "which way does the object move"\n'
            '  umt ask clip.mp4 "what is the man doing" --checkpoint runs/msrvtt-qa/best --json'
        ),
    )
    p.add_argument("video", metavar="VIDEO", help="a video file")
    p.add_argument("questions", nargs="+", metavar="QUESTION", help="one or more questions")
    p.add_argument("--checkpoint", default=None, help="QA checkpoint (see below)")
    p.add_argument(
        "--answers", default=None, metavar="ANSWERS.json", help="the candidate answers (a list)"
    )
    p.add_argument("--top-k", type=count_at_least(1), default=3, help="answers shown (default: 3)")
    add_num_frames(p)
    add_tokenizer(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line and question")
    add_qa_text_options(p)
    add_device(p)
    add_amp(p)
    add_size_options(p)
    p.set_defaults(handler=_run_ask)


def _default_qa_checkpoint() -> Path:
    """The best (else the latest) checkpoint of the latest run of :data:`DEFAULT_QA_RECIPE`."""
    from umt.train import runs

    found = runs.latest_run_dir(DEFAULT_QA_RECIPE)
    if found is None:
        raise FileNotFoundError(
            f"no QA checkpoint: no '{DEFAULT_QA_RECIPE}' run under {runs.RUNS}/; run "
            f"'umt finetune --config {DEFAULT_QA_RECIPE}' first, or pass --checkpoint"
        )
    run, last = found
    best = run / "best"
    return best if (best / "model.safetensors").is_file() else last


def _run_ask(args: argparse.Namespace) -> int:
    from umt.infer.qa import ask, load_qa_model

    note = stderr_note("ask")
    if not Path(args.video).is_file():
        raise FileNotFoundError(f"{args.video}: no such video file")
    questions = [q.strip() for q in args.questions]
    if not all(questions):
        raise InputError("an empty question was given")
    checkpoint = Path(args.checkpoint) if args.checkpoint else _default_qa_checkpoint()
    if args.checkpoint is None:
        note(f"checkpoint: {checkpoint}")
    device, amp = device_and_amp(args)
    with noted_warnings(note):
        loaded = load_qa_model(
            checkpoint, args.num_frames, args.answers, args.tokenizer, **model_sizes(args)
        )
    s = qa_text_settings(args, loaded.settings)
    results = ask(
        loaded.model,
        loaded.tokenizer,
        [args.video],
        questions,
        loaded.answers,
        top_k=args.top_k,
        k_test=int(s["k_test"]),
        question_max_length=int(s["question_max_length"]),
        answer_max_length=int(s["answer_max_length"]),
        eos=str(s["eos"]),
        device=device,
        amp_dtype=amp,
    )
    failed = 0
    for r in results:
        if args.json:
            print(json.dumps(r.to_json()), flush=True)
        elif r.error is None:
            print(f"Q: {r.question}")
            for answer, prob in r.answers:
                print(f"  {prob:7.2%}  {answer}")
        if r.error is not None:
            failed += 1
            note(f"{r.path}: cannot answer: {r.error}")
    return 1 if failed else 0
