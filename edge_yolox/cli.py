"""`edge-yolox`: run, bench, boards, doctor, service; train/eval/export/quantize-report go to edge_yolox.train.

JSON lines go to stdout, logs to stderr. A user error (EdgeYoloxError) is one line on stderr and exit 2.
This module imports only what needs no OpenCV at its top, so that a missing cv2 (ARM Linux takes the system's)
is reported by `main` as that one line too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Optional

from edge_yolox import __version__
from edge_yolox.arguments import Parser, number
from edge_yolox.errors import EdgeYoloxError, one_line

if TYPE_CHECKING:
    from edge_yolox.config import Config

FORWARDED = ("train", "eval", "export", "quantize-report")  # need torch: handled by edge_yolox.train.cli
NO_OPENCV = ("OpenCV for Python (cv2) cannot be imported ({}): install the system's, sudo apt install python3-opencv "
             "(Raspberry Pi OS, Debian, Jetson; a venv needs --system-site-packages), or pip install "
             "'edge-yolox[opencv]'")


def config_from_args(args: argparse.Namespace) -> Config:
    from edge_yolox.config import load_config
    from edge_yolox.runflags import overrides_from_args

    return load_config(args.board, args.config, overrides_from_args(args), args.zones)


# ---- commands


def cmd_run(args: argparse.Namespace) -> int:
    from edge_yolox.notify import Notifier
    from edge_yolox.pipeline import run

    config = config_from_args(args)
    logging.getLogger().setLevel(_level(args, config))
    return run(config, Notifier.from_env())  # the one place that reads systemd's environment


def cmd_bench(args: argparse.Namespace) -> int:
    from edge_yolox.benchmark import bench, format_table
    from edge_yolox.config import load_config
    from edge_yolox.runflags import ACCELERATOR_KEYS, set_key

    overrides: dict = {"source": {"uri": args.source or "synthetic", "realtime": False}}
    set_key(overrides, "model.path", args.model)
    if args.threads:
        set_key(overrides, "model.threads", args.threads)
    if args.backend:
        set_key(overrides, "model.backend", args.backend)
    for flag, key in ACCELERATOR_KEYS.items():
        if getattr(args, flag) is not None:
            set_key(overrides, key, getattr(args, flag))
    config = load_config(args.board, args.config, overrides)
    result = bench(config, frames=args.frames, warmup=args.warmup)
    print(format_table(result))
    return 0


def cmd_boards(args: argparse.Namespace) -> int:
    from edge_yolox.config import board_names, load_config

    for name in board_names():
        c = load_config(name)
        print(f"{name:18} {c.description}\n{'':18} backends {', '.join(c.model.backends)}; {c.model.threads} threads; "
              f"{c.model.variant} {c.model.precision} {c.model.input_size[0]}x{c.model.input_size[1]}; "
              f"camera {c.camera.kind} {c.camera.width}x{c.camera.height}@{c.camera.fps:g}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge_yolox.doctor import report

    ok = True
    for section, rows in report().items():
        print(section)
        for name, status, detail in rows:
            ok &= status != "FAIL"
            print(f"  {status:4} {name:22} {detail}")
    return 0 if ok else 1


def forward(argv: list[str]) -> int:
    """Training-side commands live in edge_yolox.train (they need torch, which the runtime never imports)."""
    try:
        train_cli = importlib.import_module("edge_yolox.train.cli")
    except ImportError as exc:
        raise EdgeYoloxError(f"`{argv[0]}` is not available: {exc}; install the training extra: "
                             f"pip install 'edge-yolox[train]'") from None
    return int(train_cli.main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    from edge_yolox import service
    from edge_yolox.config import BACKEND_NAMES
    from edge_yolox.runflags import add_accelerator_arguments, add_run_arguments

    parser = Parser(prog="edge-yolox", description="YOLOX on Raspberry Pi, Jetson and x86")
    parser.add_argument("--version", action="version", version=f"edge-yolox {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="detect on a camera, file or stream; JSON lines on stdout")
    add_run_arguments(run)
    run.set_defaults(func=cmd_run)
    bench = sub.add_parser("bench", help="per-stage latency medians and end-to-end fps")
    bench.add_argument("--model", required=True)
    bench.add_argument("--board")
    bench.add_argument("--config")
    bench.add_argument("--source", help="a video/image file or folder (default: the synthetic scene)")
    bench.add_argument("--backend", choices=BACKEND_NAMES)
    bench.add_argument("--threads", type=number(int, 1, 64))
    add_accelerator_arguments(bench)
    bench.add_argument("--frames", type=number(int, 1), default=100, help="frames to time (default 100)")
    bench.add_argument("--warmup", type=number(int, 0), default=5)
    bench.set_defaults(func=cmd_bench)
    sub.add_parser("boards", help="list the board profiles").set_defaults(func=cmd_boards)
    sub.add_parser("doctor", help="what works here: backends, cameras, extras").set_defaults(func=cmd_doctor)
    service.add_parser(sub)
    for name in FORWARDED:
        sub.add_parser(name, help=f"{name} (needs the [train] extra)", add_help=False)
    return parser


def _level(args: argparse.Namespace, config: Optional[Config] = None) -> int:
    if args.verbose:
        return logging.DEBUG
    if args.quiet:
        return logging.WARNING
    return getattr(logging, config.runtime.log_level.upper()) if config else logging.INFO


def opencv() -> None:
    """Every command reads images or models through OpenCV: without it, say how to install it, in one line."""
    try:
        import cv2  # noqa: F401
    except ImportError as exc:  # missing, or built against another numpy
        raise EdgeYoloxError(NO_OPENCV.format(exc)) from None


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        opencv()
        command = next((a for a in argv if not a.startswith("-")), None)
        if command in FORWARDED:
            return forward(argv[argv.index(command):])
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        logging.getLogger().setLevel(_level(args))
        return int(args.func(args) or 0)
    except EdgeYoloxError as exc:
        print(f"edge-yolox: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout closed by its reader (`| head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
