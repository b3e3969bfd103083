"""Command-line parts for video question answering: ``umt ask``, ``umt evaluate qa``,
``umt evaluate mc``. Registered by :mod:`umt.cli`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from umt.cli_options import count_at_least, model_sizes, size_options
from umt.errors import InputError

DEFAULT_QA_RECIPE = "umt-tiny-synthetic-qa"


def _common_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:1, ...")
    p.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "none", "fp16", "bf16"],
        help="autocast dtype (auto: fp16 on CUDA as the official test, none on CPU)",
    )


def _note(command: str):
    def note(message: str) -> None:
        print(f"umt {command}: {message}", file=sys.stderr)

    return note


def _device_amp(args: argparse.Namespace) -> tuple[Any, Any]:
    from umt.infer.classify import resolve_device
    from umt.utils.device import resolve_amp

    device = resolve_device(args.device)
    return device, resolve_amp(args.amp, device)


def qa_text_options(p: argparse.ArgumentParser) -> None:
    """How questions and answers are written and ranked (default: the checkpoint's ``qa.json``,
    else the official 128 / 25 / 5)."""
    p.add_argument("--k-test", type=count_at_least(1), default=None, help="re-ranked answers (128)")
    p.add_argument("--max-question-len", type=count_at_least(3), default=None, help="tokens (25)")
    p.add_argument("--max-answer-len", type=count_at_least(3), default=None, help="tokens (5)")


def qa_text_settings(args: argparse.Namespace, saved: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's QA settings with :func:`qa_text_options` given on the command line."""
    given = {
        "k_test": args.k_test,
        "question_max_length": args.max_question_len,
        "answer_max_length": args.max_answer_len,
    }
    return {**saved, **{k: v for k, v in given.items() if v is not None}}


def _caught(note, said: list) -> None:
    for caught in said:
        note(f"warning: {caught.message}")


# --------------------------------------------------------------------------- umt ask
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
            "answer_list.json, vocabulary and qa.json lie beside the weights) or an official\n"
            "QA .pth with --answers. Default: the best (else the latest) checkpoint of the\n"
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
    p.add_argument(
        "--num-frames",
        type=count_at_least(1),
        default=None,
        help="frames (default: the checkpoint's)",
    )
    p.add_argument("--tokenizer", default=None, metavar="PATH", help="vocab.txt or its folder")
    p.add_argument("--json", action="store_true", help="one JSON object per line and question")
    qa_text_options(p)
    _common_device(p)
    size_options(p)
    p.set_defaults(handler=run_ask)


def default_qa_checkpoint() -> Path:
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


def run_ask(args: argparse.Namespace) -> int:
    import warnings

    from umt.infer.qa import ask, load_qa_model

    note = _note("ask")
    if not Path(args.video).is_file():
        raise FileNotFoundError(f"{args.video}: no such video file")
    questions = [q.strip() for q in args.questions]
    if not all(questions):
        raise InputError("an empty question was given")
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_qa_checkpoint()
    if args.checkpoint is None:
        note(f"checkpoint: {checkpoint}")
    device, amp = _device_amp(args)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        loaded = load_qa_model(
            checkpoint, args.num_frames, args.answers, args.tokenizer, **model_sizes(args)
        )
    _caught(note, said)
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


# --------------------------------------------------------------------------- evaluate qa / mc
def add_evaluate_qa(tasks: argparse._SubParsersAction) -> None:
    q = tasks.add_parser(
        "qa",
        help="open-ended video QA accuracy (answer-list ranking, exact match)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "The official open-ended QA test: each question's clip and text go through the "
            "video and question encoders; the answer decoder scores the first token of every "
            "answer of the list, re-scores the --k-test likeliest whole answers and predicts "
            "the best; accuracy is the share of exact string matches with the ground truth. "
            "Prints the accuracy (and per question type when the file has types); the last "
            "line of stdout is a JSON object."
        ),
        epilog=(
            "annotation formats (--format auto detects them):\n"
            "  umt        the official JSON: [{video, question, answer, question_id}]\n"
            "  msrvtt-qa  the MSRVTT-QA release: [{video_id, question, answer, id}]\n"
            "  msvd-qa    the MSVD-QA release (+ youtube_mapping.txt beside it)\n"
            "  anet-qa    the ActivityNet-QA release (<split>_q.json + <split>_a.json)\n\n"
            "example:\n"
            "  umt evaluate qa runs/msrvtt-qa/best msrvtt_qa_test.json --root videos/ \\\n"
            "      --answer-list msrvtt_qa_answer_list.json"
        ),
    )
    q.add_argument("checkpoint", help="QA checkpoint: umt's folder or an official QA .pth")
    q.add_argument("annotations", metavar="ANNOTATIONS", help="QA test annotations")
    q.add_argument("--answer-list", default=None, metavar="JSON", help="the candidate answers")
    q.add_argument("--root", default=None, help="prefix for relative video paths")
    q.add_argument(
        "--format", default="auto", choices=["auto", "umt", "msrvtt-qa", "msvd-qa", "anet-qa"]
    )
    q.add_argument(
        "--num-frames",
        type=count_at_least(1),
        default=None,
        help="frames (default: the checkpoint's)",
    )
    qa_text_options(q)
    q.add_argument("--batch-size", type=count_at_least(1), default=16, help="questions per pass")
    q.add_argument("--predictions", default=None, metavar="FILE.jsonl", help="per-question output")
    q.add_argument("--tokenizer", default=None, metavar="PATH", help="vocab.txt or its folder")
    q.add_argument("--workers", type=count_at_least(0), default=4, help="decoding processes")
    _common_device(q)
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    size_options(q)
    q.set_defaults(handler=run_evaluate_qa)


def _unread(faults: list[tuple[int, str, str]]) -> str:
    """The note naming the videos an evaluation could not read (at most 5, then a count)."""
    paths = sorted({path for _, path, _ in faults})
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return f"{len(faults)} questions on {len(paths)} unreadable video(s), counted as wrong: {shown}"


def run_evaluate_qa(args: argparse.Namespace) -> int:
    import warnings

    from umt.data.formats.qa import load_qa_annotations
    from umt.data.qa import QADataset
    from umt.evaluate.qa import evaluate_qa, write_qa_predictions
    from umt.infer.qa import load_qa_model
    from umt.outputs import check_writable

    note = _note("evaluate")
    if args.predictions:  # before the (long) evaluation, not after it
        check_writable(args.predictions, "predictions file")
    entries = load_qa_annotations(args.annotations, root=args.root, fmt=args.format)
    device, amp = _device_amp(args)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        loaded = load_qa_model(
            args.checkpoint, args.num_frames, args.answer_list, args.tokenizer, **model_sizes(args)
        )
    _caught(note, said)
    s = qa_text_settings(args, loaded.settings)
    enc = loaded.model.vision_encoder
    dataset = QADataset(entries, num_frames=enc.num_frames, input_size=enc.img_size, train=False)
    dataset.source = str(args.annotations)
    model = loaded.model.to(device)
    result = evaluate_qa(
        model,
        dataset,
        loaded.tokenizer,
        loaded.answers,
        k_test=int(s["k_test"]),
        question_max_length=int(s["question_max_length"]),
        answer_max_length=int(s["answer_max_length"]),
        eos=str(s["eos"]),
        batch_size=args.batch_size,
        num_workers=args.workers,
        amp_dtype=amp,
        progress=not args.no_progress,
    )
    print(
        f"QA accuracy (exact match): {result.accuracy:.2f}% of {result.num_questions} "
        f"questions; {len(loaded.answers)} candidate answers"
    )
    for t, acc in result.per_type.items():
        print(f"  {t:<16} {acc:6.2f}%")
    if result.faults:
        note(_unread(result.faults))
    if args.predictions:
        write_qa_predictions(args.predictions, result)
    print(json.dumps(result.summary()))
    return 0


def add_evaluate_mc(tasks: argparse._SubParsersAction) -> None:
    m = tasks.add_parser(
        "mc",
        help="multiple-choice accuracy of a video-text model (MSRVTT-MC)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "The official MSRVTT multiple-choice test: every option of a video is scored "
            "0.7 x softmax(ITM)[match] + 0.3 x softmax over the options of (the mean over "
            "frames of the cosine / the learnt temperature); the best-scored option is the "
            "prediction. Prints the accuracy; the last line of stdout is a JSON object."
        ),
        epilog=(
            'annotations: a JSON list of {"video", "caption": [options], "answer": index}\n\n'
            "example:\n"
            "  umt evaluate mc b16_25m.pth msrvtt_mc_test.json --root videos/"
        ),
    )
    m.add_argument("checkpoint", help="video-text model: official multimodal .pth or umt's folder")
    m.add_argument("annotations", metavar="ANNOTATIONS.json", help="multiple-choice annotations")
    m.add_argument("--root", default=None, help="prefix for relative video paths")
    m.add_argument("--num-frames", type=count_at_least(1), default=12, help="frames (default: 12)")
    m.add_argument(
        "--max-text-len", type=count_at_least(3), default=32, help="tokens per option (32)"
    )
    m.add_argument("--batch-size", type=count_at_least(1), default=8, help="questions per pass")
    m.add_argument("--predictions", default=None, metavar="FILE.jsonl", help="per-question output")
    m.add_argument("--tokenizer", default=None, metavar="PATH", help="vocab.txt or its folder")
    m.add_argument("--workers", type=count_at_least(0), default=4, help="decoding processes")
    _common_device(m)
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    size_options(m)
    m.set_defaults(handler=run_evaluate_mc)


def run_evaluate_mc(args: argparse.Namespace) -> int:
    import warnings

    from umt.data.qa import MCDataset
    from umt.evaluate.multiple_choice import evaluate_mc, write_mc_predictions
    from umt.evaluate.retrieval import load_video_text, resolve_tokenizer
    from umt.outputs import check_writable

    note = _note("evaluate")
    if not Path(args.annotations).is_file():
        raise FileNotFoundError(f"{args.annotations}: no such annotation file")
    if args.predictions:  # before the (long) evaluation, not after it
        check_writable(args.predictions, "predictions file")
    device, amp = _device_amp(args)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        model = load_video_text(args.checkpoint, args.num_frames, **model_sizes(args))
    _caught(note, said)
    tokenizer = resolve_tokenizer(args.checkpoint, model, args.tokenizer)
    dataset = MCDataset(
        args.annotations,
        root=args.root,
        num_frames=args.num_frames,
        input_size=model.vision_encoder.img_size,
    )
    result = evaluate_mc(
        model.to(device),
        dataset,
        tokenizer,
        max_text_len=args.max_text_len,
        batch_size=args.batch_size,
        num_workers=args.workers,
        amp_dtype=amp,
        progress=not args.no_progress,
    )
    print(
        f"multiple-choice accuracy: {result.accuracy:.2f}% of {result.num_questions} questions "
        "(0.7 ITM + 0.3 ITC)"
    )
    if result.faults:
        note(_unread(result.faults))
    if args.predictions:
        write_mc_predictions(args.predictions, result)
    print(json.dumps(result.summary()))
    return 0
