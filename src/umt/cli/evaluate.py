"""``umt evaluate``: classification, retrieval, AVA, QA and multiple-choice tests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from umt.cli._common import (
    add_classifier_sizes,
    add_evaluation_run,
    add_num_frames,
    add_qa_text_options,
    add_size_options,
    add_tokenizer,
    count_at_least,
    model_sizes,
    no_subcommand,
    noted_warnings,
    stderr_note,
    views,
    warnings_as_notes,
)
from umt.errors import InputError

__all__ = ["add_evaluate"]

_EVALUATE_EPILOG = """\
output (stdout): a line with the counts, a line with the accuracies, then as the LAST line one
JSON object: {"top1", "top5", "mean_class_acc" (percent), "videos" (scored), "views" (per video),
"clips", "crops", "classes", "listed", "skipped" (count), "skipped_videos" [{"path", "reason"}]}.
The progress bar and warnings (one per unreadable video, which is skipped) go to stderr.

--predictions FILE.jsonl writes one JSON line per scored video: "path" (as in LIST), "label",
"prediction", "scores" (mean over views of the softmax), "view_logits" ([views][classes], view =
clip * crops + crop) and "frame_indices" ([clips][T]); beside it FILE.per_class.csv (per-class
top-1) and, for at most 50 classes, FILE.confusion.png. Without --predictions no file is written.

many GPUs: torchrun --nproc_per_node 8 -m umt evaluate classification ... (each process scores
a shard of the videos; rank 0 prints and writes).
Exit 0: done; 1: no video could be read (or another data failure); 2: bad arguments or files.
"""


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test a model: the official multi-view classification test, text-video retrieval, "
        "AVA frame-mAP, video QA, multiple choice",
    )
    tasks = p.add_subparsers(dest="evaluate_command", metavar="TASK")
    c = tasks.add_parser(
        "classification",
        help="multi-view test of a video classifier over an annotated list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Score every video of LIST with CLIPS x CROPS views (official test: frames of "
            "clip c of C in each of T segments, short side resized, crops along the long "
            "side), merge the views as the official code does (mean of the per-view softmax) "
            "and print top-1, top-5 and mean class accuracy."
        ),
        epilog=_EVALUATE_EPILOG,
    )
    c.add_argument(
        "checkpoint",
        help="fine-tuned classifier: official .pth, a umt checkpoint folder/file, or a released "
        "name ('umt models')",
    )
    c.add_argument("list", help="annotation list (path,label lines; SSv2 JSON with --format)")
    c.add_argument(
        "--root", default=None, help="prefix for relative paths (default: LIST's folder)"
    )
    c.add_argument("--format", default="auto", choices=["auto", "list", "ssv2"])
    c.add_argument("--labels", default=None, help="SSv2 label-name -> index JSON")
    add_classifier_sizes(c)
    c.add_argument(
        "--short-side",
        type=count_at_least(1),
        default=None,
        help="resize the short side to this before cropping (default: the input size)",
    )
    c.add_argument(
        "--views",
        type=views,
        default=(4, 3),
        metavar="CLIPSxCROPS",
        help="temporal clips x spatial crops (default: 4x3, the official Kinetics test)",
    )
    c.add_argument(
        "--sampling",
        default="sparse",
        choices=["sparse", "dense", "ssv2"],
        help="sparse: official segment test (default); dense: official kinetics.py clips of "
        "T frames --frame-stride apart; ssv2: official SSv2 test (2 clips)",
    )
    c.add_argument(
        "--frame-stride",
        type=count_at_least(1),
        default=4,
        help="frame step of --sampling dense (default: 4)",
    )
    c.add_argument(
        "--batch-size",
        type=count_at_least(1),
        default=4,
        help="VIDEOS per forward pass (each brings CLIPS x CROPS views; default: 4)",
    )
    c.add_argument("--predictions", default=None, metavar="FILE.jsonl", help="per-video output")
    add_evaluation_run(c, backend=True)
    c.set_defaults(handler=_run_evaluate_classification)
    _add_evaluate_retrieval(tasks)
    _add_evaluate_ava(tasks)
    _add_evaluate_qa(tasks)
    _add_evaluate_mc(tasks)
    p.set_defaults(handler=lambda args: no_subcommand(p))


def _add_evaluate_retrieval(tasks: argparse._SubParsersAction) -> None:
    r = tasks.add_parser(
        "retrieval",
        help="text-video retrieval of a video-text model (ITC, then ITM re-ranking)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "The official retrieval test: every text and video embedded, the ITC similarity "
            "(mean over frames of the cosine, temperature 1) ranks all pairs, then the ITM head "
            "re-scores the top --k-test of each query in each direction (its match logit "
            "replaces the score). Prints R@1/5/10 text-to-video and video-to-text, their means, "
            "median and mean rank, for the re-ranked and the ITC-only scores; the last line of "
            "stdout is a JSON object (t2v_r1, ..., v2t_r10 re-ranked; *_itc for ITC only)."
        ),
        epilog=(
            "annotation formats: a JSON list of {video, caption}; caption a string or a list\n"
            "(several texts per video: MSVD), video a string or a list (several videos per\n"
            "text: SSv2-label / template). --paragraph joins a video's sentences into one text\n"
            "(DiDeMo, ActivityNet); DiDeMo also takes --max-seconds 30.\n\n"
            "examples:\n"
            "  umt evaluate retrieval b16_25m.pth msrvtt_ret_test1k.json --root videos/\n"
            "  umt evaluate retrieval b16_25m.pth didemo_ret_test.json --root videos/ \\\n"
            "      --paragraph --max-seconds 30 --max-text-len 64"
        ),
    )
    r.add_argument(
        "checkpoint",
        help="video-text model: official multimodal .pth, umt's folder, or a released name",
    )
    r.add_argument("annotations", metavar="ANNOTATIONS.json", help="retrieval test annotations")
    r.add_argument("--root", default=None, help="prefix for relative video paths")
    add_num_frames(r, default=4, help="frames per video (default: 4)")
    r.add_argument(
        "--k-test",
        type=count_at_least(0),
        default=128,
        help="ITM re-ranks the top K of each query (default: 128; 0: ITC only)",
    )
    r.add_argument(
        "--max-text-len",
        type=count_at_least(3),
        default=32,
        help="tokens per text, [CLS] included (default: 32)",
    )
    r.add_argument(
        "--paragraph", action="store_true", help="join each video's sentences into one text"
    )
    r.add_argument(
        "--batch-size", type=count_at_least(1), default=32, help="videos per forward pass"
    )
    r.add_argument("--predictions", default=None, metavar="FILE.jsonl", help="per-query output")
    r.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="sample only the first N seconds of each video (DiDeMo: 30)",
    )
    add_tokenizer(r)
    add_evaluation_run(r, backend=True)
    add_size_options(r)
    r.set_defaults(handler=_run_evaluate_retrieval)


def _add_evaluate_ava(tasks: argparse._SubParsersAction) -> None:
    a = tasks.add_parser(
        "ava",
        help="AVA v2.2 frame-mAP@0.5 of a detections CSV (the official Pascal protocol)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Score detections against AVA ground truth as the official evaluation does: per "
            "class, detections ranked by score, each matched to its best-IoU ground-truth box "
            "of the same keyframe (a true positive at IoU >= 0.5 when that box is still free), "
            "AP as the area under the monotone precision-recall curve, mean over the classes "
            "of the label map that have ground truth; excluded keyframes are left out of both."
        ),
        epilog=(
            "files (AVA formats):\n"
            "  GROUNDTRUTH.csv  video_id,timestamp,x1,y1,x2,y2,action_id[,person_id] (0-1 coords)\n"
            "  DETECTIONS.csv   video_id,timestamp,x1,y1,x2,y2,action_id[,person_id],score\n"
            "  --label-map      ava_action_list_v2.2_for_activitynet_2019.pbtxt (60 classes)\n"
            "  --exclusions     ava_val_excluded_timestamps_v2.2.csv\n"
            "prints mAP and the AP of every class; the last line is JSON."
        ),
    )
    a.add_argument("groundtruth", metavar="GROUNDTRUTH.csv")
    a.add_argument("detections", metavar="DETECTIONS.csv")
    a.add_argument("--label-map", required=True, metavar="PBTXT", help="the classes evaluated")
    a.add_argument("--exclusions", default=None, metavar="CSV", help="excluded keyframes")
    a.add_argument("--iou", type=float, default=0.5, help="matching IoU (default 0.5)")
    a.set_defaults(handler=_run_evaluate_ava)


def _run_evaluate_ava(args: argparse.Namespace) -> int:
    import math

    from umt.evaluate.detection import frame_map_from_files

    if not 0.0 < args.iou <= 1.0:
        raise InputError(f"--iou: must be in (0, 1], got {args.iou}")
    res = frame_map_from_files(
        args.groundtruth, args.detections, args.label_map, args.exclusions, iou=args.iou
    )
    print(
        f"frame-mAP@{args.iou:g}: {100 * res.mean_ap:.2f}% over "
        f"{len(res.average_precision)} classes with ground truth; {res.num_groundtruth_boxes} "
        f"ground-truth boxes in {res.num_groundtruth_frames} keyframes, "
        f"{res.num_detections} detections"
    )
    for cid, ap in sorted(res.average_precision.items()):
        print(f"  {cid:>3} {res.class_names[cid]:<40} AP {100 * ap:6.2f}%")
    if res.classes_without_groundtruth:
        print(f"  ({len(res.classes_without_groundtruth)} classes without ground truth skipped)")

    def number(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 6)

    print(
        json.dumps(
            {
                "map": number(res.mean_ap),
                "ap": {res.class_names[c]: number(v) for c, v in res.average_precision.items()},
                "groundtruth_boxes": res.num_groundtruth_boxes,
                "groundtruth_frames": res.num_groundtruth_frames,
                "detections": res.num_detections,
            }
        )
    )
    return 0


def _run_evaluate_retrieval(args: argparse.Namespace) -> int:
    from umt.evaluate.retrieval import run_retrieval

    with warnings_as_notes(stderr_note("evaluate")):
        result = run_retrieval(
            args.checkpoint,
            args.annotations,
            root=args.root,
            num_frames=args.num_frames,
            k_test=args.k_test,
            max_text_len=args.max_text_len,
            paragraph=args.paragraph,
            batch_size=args.batch_size,
            predictions=args.predictions,
            tokenizer=args.tokenizer,
            max_seconds=args.max_seconds,
            device=args.device,
            amp=args.amp,
            num_workers=args.workers,
            backend=args.backend,
            progress=not args.no_progress,
            sizes=model_sizes(args),
        )
    print(json.dumps(result, default=float))
    return 0


def _run_evaluate_classification(args: argparse.Namespace) -> int:
    with warnings_as_notes(stderr_note("evaluate")):
        return _evaluate_classification(args)


def _evaluate_classification(args: argparse.Namespace) -> int:
    from umt.evaluate.classification import run_classification, write_classification_outputs

    run = run_classification(
        args.checkpoint,
        args.list,
        root=args.root,
        format=args.format,
        labels=args.labels,
        num_frames=args.num_frames,
        img_size=args.input_size,
        num_heads=args.num_heads,
        short_side=args.short_side,
        views=args.views,
        sampling=args.sampling,
        frame_stride=args.frame_stride,
        batch_size=args.batch_size,
        num_workers=args.workers,
        backend=args.backend,
        device=args.device,
        amp=args.amp,
        predictions=args.predictions,
        progress=not args.no_progress,
    )
    result = run.result
    if run.rank == 0:
        skipped = len(result.skipped)
        if skipped:
            print(
                f"umt evaluate: {skipped} of {result.num_listed} videos skipped (unreadable; "
                "listed in skipped_videos)",
                file=sys.stderr,
            )
        clips, crops = args.views
        print(
            f"{result.num_videos} videos scored, {skipped} skipped; {result.num_views} views each "
            f"({clips} clips x {crops} crops), {run.num_frames} frames at "
            f"{run.img_size} px, sampling {args.sampling}"
        )
        print(
            f"top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  "
            f"mean class accuracy {result.mean_class_acc:.2f}%"
        )
        if args.predictions is not None:
            written = write_classification_outputs(result, Path(args.predictions))
            print("wrote " + ", ".join(str(p) for p in written))
        print(json.dumps(result.summary()))
    if run.world > 1:
        import torch.distributed as dist

        from umt.train.distributed import exit_process

        dist.barrier()
        exit_process(0)  # skip the teardown that can abort gloo workers (see exit_process)
    return 0


def _add_evaluate_qa(tasks: argparse._SubParsersAction) -> None:
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
    q.add_argument(
        "checkpoint", help="QA checkpoint: umt's folder, an official QA .pth, or a released name"
    )
    q.add_argument("annotations", metavar="ANNOTATIONS", help="QA test annotations")
    q.add_argument("--answer-list", default=None, metavar="JSON", help="the candidate answers")
    q.add_argument("--root", default=None, help="prefix for relative video paths")
    q.add_argument(
        "--format", default="auto", choices=["auto", "umt", "msrvtt-qa", "msvd-qa", "anet-qa"]
    )
    add_num_frames(q)
    add_qa_text_options(q)
    q.add_argument("--batch-size", type=count_at_least(1), default=16, help="questions per pass")
    q.add_argument("--predictions", default=None, metavar="FILE.jsonl", help="per-question output")
    add_tokenizer(q)
    add_evaluation_run(q)
    add_size_options(q)
    q.set_defaults(handler=_run_evaluate_qa)


def _unread(faults: list[tuple[int, str, str]]) -> str:
    """The note naming the videos an evaluation could not read (at most 5, then a count)."""
    paths = sorted({path for _, path, _ in faults})
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return f"{len(faults)} questions on {len(paths)} unreadable video(s), counted as wrong: {shown}"


def _run_evaluate_qa(args: argparse.Namespace) -> int:
    from umt.evaluate.qa import run_qa, write_qa_predictions

    note = stderr_note("evaluate")
    run = run_qa(
        args.checkpoint,
        args.annotations,
        answer_list=args.answer_list,
        root=args.root,
        format=args.format,
        num_frames=args.num_frames,
        k_test=args.k_test,
        question_max_length=args.max_question_len,
        answer_max_length=args.max_answer_len,
        tokenizer=args.tokenizer,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        amp=args.amp,
        predictions=args.predictions,
        progress=not args.no_progress,
        sizes=model_sizes(args),
        load_context=lambda: noted_warnings(note),
    )
    result = run.result
    print(
        f"QA accuracy (exact match): {result.accuracy:.2f}% of {result.num_questions} "
        f"questions; {run.num_answers} candidate answers"
    )
    for t, acc in result.per_type.items():
        print(f"  {t:<16} {acc:6.2f}%")
    if result.faults:
        note(_unread(result.faults))
    if args.predictions:
        write_qa_predictions(args.predictions, result)
    print(json.dumps(result.summary()))
    return 0


def _add_evaluate_mc(tasks: argparse._SubParsersAction) -> None:
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
    m.add_argument(
        "checkpoint",
        help="video-text model: official multimodal .pth, umt's folder, or a released name",
    )
    m.add_argument("annotations", metavar="ANNOTATIONS.json", help="multiple-choice annotations")
    m.add_argument("--root", default=None, help="prefix for relative video paths")
    add_num_frames(m, default=12, help="frames (default: 12)")
    m.add_argument(
        "--max-text-len", type=count_at_least(3), default=32, help="tokens per option (32)"
    )
    m.add_argument("--batch-size", type=count_at_least(1), default=8, help="questions per pass")
    m.add_argument("--predictions", default=None, metavar="FILE.jsonl", help="per-question output")
    add_tokenizer(m)
    add_evaluation_run(m)
    add_size_options(m)
    m.set_defaults(handler=_run_evaluate_mc)


def _run_evaluate_mc(args: argparse.Namespace) -> int:
    from umt.evaluate.multiple_choice import run_mc, write_mc_predictions

    note = stderr_note("evaluate")
    result = run_mc(
        args.checkpoint,
        args.annotations,
        root=args.root,
        num_frames=args.num_frames,
        max_text_len=args.max_text_len,
        tokenizer=args.tokenizer,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        amp=args.amp,
        predictions=args.predictions,
        progress=not args.no_progress,
        sizes=model_sizes(args),
        load_context=lambda: noted_warnings(note),
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
