"""``umt serve``: a local web page to search an index, classify a clip and see its mask."""

from __future__ import annotations

import argparse
import errno
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from umt.cli._common import Note, add_device, count_at_least, stderr_note
from umt.errors import InputError, MachineError, StoppedError

__all__ = ["add_serve", "bind", "load_services", "run_serve"]

_EPILOG = """\
The page (plain JavaScript served by this process; nothing is fetched from the internet):
search the index by text (thumbnails, results play in the page; ITC order, or the ITM head's
with the page's re-rank box), classify an uploaded clip (top 5: --classifier, else zero-shot over --labels with the index's
video-text model) and draw a clip's semantic mask (the teacher's, as umt visualize-mask).
Everything is loaded before the port is opened; a missing index or checkpoint ends in one line.
One line on stdout once it listens: the URL. Ctrl-C / SIGTERM stop it (exit 130 / 143).

examples:
  umt embed my_videos/ --checkpoint umt-b16-25m -o index/
  umt serve --index index/ --classifier umt-b16-k400
  umt serve --index index/ --labels labels.txt --port 8080
"""


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="a local web page: search an index by text, classify a clip, see its mask",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Serve a small web page over an index of umt embed and its video-text model, bound "
            "to localhost: text search with thumbnails and playable results, the top-5 classes "
            "of an uploaded clip, and a clip's semantic mask. Needs the serve extra: "
            "pip install 'umt[serve]'."
        ),
        epilog=_EPILOG,
    )
    p.add_argument("--index", required=True, metavar="DIR", help="index folder of umt embed")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="the video-text model (default: the one the index was made with)",
    )
    p.add_argument(
        "--classifier",
        default=None,
        metavar="CKPT",
        help="fine-tuned classifier for uploads (a path or a released name such as "
        "umt-b16-k400, as umt classify --checkpoint); default: zero-shot over --labels",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="class names, one per line: of --classifier's head (default: the shipped list "
        "matching it), or without --classifier the zero-shot classes (as umt classify "
        "--zero-shot)",
    )
    p.add_argument(
        "--teacher",
        default=None,
        metavar="PATH|NAME",
        help="teacher of the semantic mask: CLIP weights, or a released stage-2 checkpoint "
        "(its teacher); default: the built-in one, as umt visualize-mask",
    )
    p.add_argument("--no-mask", action="store_true", help="no semantic mask (no teacher loaded)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this "
        "machine only; 0.0.0.0 opens it to the network)"
    )  # fmt: skip
    p.add_argument(
        "--port",
        type=count_at_least(0),
        default=8000,
        help="port (default: 8000; 0: a free one, said on start)",
    )
    add_device(p)
    p.set_defaults(handler=run_serve)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; a port in use, or a host that is not this
    machine's, is one line saying what to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise InputError(
            f"--host {host}: not an address ({err.strerror}); e.g. 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise MachineError(
                f"port {port} on {host} is in use (another umt serve?); choose another with "
                "--port, or --port 0 for a free one"
            ) from None
        if err.errno == errno.EACCES:
            raise MachineError(
                f"port {port} on {host}: permission denied (ports below 1024 need root); "
                "choose another with --port"
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise InputError(
                f"--host {host}: not an address of this machine; e.g. 127.0.0.1"
            ) from None
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _check_serve_extra() -> None:
    missing = []
    for module in ("fastapi", "uvicorn", "multipart"):
        try:
            __import__(module)
        except ImportError:
            missing.append("python-multipart" if module == "multipart" else module)
    if missing:
        raise MachineError(
            f"umt serve needs {', '.join(missing)}: pip install 'umt[serve]' (FastAPI, uvicorn, "
            "python-multipart)"
        )


def load_services(args: argparse.Namespace, note: Note) -> Any:
    """The :class:`umt.serve.Services` of ``umt serve ARGS``: the index and its model, the
    classifier of uploads, the mask's teacher, all loaded (each error one line)."""
    from pathlib import Path

    from umt.cli.infer import load_index_and_model
    from umt.infer.search import check_model
    from umt.models.released import checkpoint_exists, release_hint
    from umt.serve import Services, fine_tuned_classifier, zero_shot_classifier
    from umt.utils.device import resolve_device

    if args.labels is not None and not Path(args.labels).is_file():
        raise FileNotFoundError(f"--labels {args.labels}: file not found")
    if args.classifier is not None and not checkpoint_exists(args.classifier):
        hint = release_hint(args.classifier)
        raise FileNotFoundError(f"--classifier {args.classifier}: checkpoint not found{hint}")
    device = resolve_device(args.device)
    index, model, tokenizer, checkpoint = load_index_and_model(args.index, args.checkpoint, note)
    if len(index) == 0:
        raise InputError(f"{args.index}: the index holds no video; embed some with umt embed")
    check_model(index, model, checkpoint)
    model = model.eval().to(device)
    classifier = None
    if args.classifier is not None:
        classifier = fine_tuned_classifier(args.classifier, args.labels)
        classifier.model = classifier.model.to(device)
    elif args.labels is not None:
        classifier = zero_shot_classifier(model, tokenizer, args.labels, checkpoint, device)
    else:
        note("uploads are not classified: give --classifier CKPT or --labels FILE")
    mask_config, teacher = None, None
    if not args.no_mask:
        from umt.config import load_config
        from umt.train.tasks.common import build_teacher

        overrides = [] if args.teacher is None else [f"teacher.weights={args.teacher}"]
        mask_config = load_config(None, overrides)
        teacher = build_teacher(mask_config, log=note)
    return Services(index, model, tokenizer, checkpoint, device, classifier, mask_config, teacher)


def run_serve(args: argparse.Namespace) -> int:
    note = stderr_note("serve")
    _check_serve_extra()
    bind(args.host, args.port).close()  # a port in use is said before minutes of loading
    try:
        services = load_services(args, note)
    except KeyboardInterrupt:
        raise StoppedError("stopped by SIGINT while loading", signal.SIGINT) from None

    import uvicorn

    from umt.serve import create_app

    stopped: list[int] = []

    class Server(uvicorn.Server):
        """uvicorn's server, whose Ctrl-C / SIGTERM shut it down and end this command with its
        exit code (130 / 143), where uvicorn would raise the signal again once shut down."""

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # run_serve holds the handlers, from before the URL is said

        def handle_exit(self, sig: int, frame: Any) -> None:
            stopped.append(sig)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        create_app(services), log_level="warning", access_log=False, lifespan="off"
    )
    server = Server(config)
    sock = bind(args.host, args.port)
    old = {s: signal.signal(s, server.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"umt serve: {_url(sock)}  ({len(services.index)} videos; Ctrl-C stops)", flush=True)
        server.run(sockets=[sock])
    finally:
        sock.close()
        for s, handler in old.items():
            signal.signal(s, handler)
    if stopped:
        raise StoppedError(f"stopped by {signal.Signals(stopped[0]).name}", stopped[0])
    return 0
