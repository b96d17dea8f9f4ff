"""`edge-yolox`: run, bench, boards, doctor, service; train/eval/export/quantize-report go to edge_yolox.train.

JSON lines go to stdout, logs to stderr. A user error (EdgeYoloxError) is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from edge_yolox import __version__
from edge_yolox import sinks as sink_registry
from edge_yolox.arguments import Parser, number
from edge_yolox.config import BACKEND_NAMES, Config, board_names, load_config
from edge_yolox.errors import ConfigError, EdgeYoloxError, one_line

FORWARDED = ("train", "eval", "export", "quantize-report")  # need torch: handled by edge_yolox.train.cli
log = logging.getLogger("edge_yolox")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `run` (also used by `service install` to render the same run as a unit)."""
    parser.add_argument("--board", help=f"board defaults: {', '.join(board_names())} or a YAML path "
                                        "(default: detected)")
    parser.add_argument("--config", help="YAML config file overriding the board (flags override it)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, metavar="N", help="the board's camera N (V4L2 index, CSI number)")
    src.add_argument("--source", metavar="SRC",
                     help="video, image or folder, rtsp://|http:// URL, GStreamer pipeline, synthetic, "
                          "picamera2, nvargus")
    src.add_argument("--demo", action="store_true", help="the built-in demo model on the synthetic scene")
    parser.add_argument("--model", help="model bundle directory or bare .onnx/.tflite/.param")
    parser.add_argument("--backend", choices=BACKEND_NAMES, help="force a backend (default: by model file)")
    parser.add_argument("--threads", type=int, help="inference threads")
    parser.add_argument("--img-size", type=int, nargs="+", metavar="PX",
                        help="model input size (h [w]) for models with a dynamic input")
    parser.add_argument("--legacy", action="store_true", default=None,
                        help="pre-0.1.1 YOLOX weights: RGB/255/mean-std preprocessing")
    parser.add_argument("--conf", type=float, help="score threshold (default 0.25)")
    parser.add_argument("--nms", type=float, help="NMS IoU threshold (default 0.45)")
    parser.add_argument("--agnostic", action="store_true", default=None, help="class-agnostic NMS")
    parser.add_argument("--classes", help="keep only these classes, comma-separated names or ids")
    parser.add_argument("--max-det", type=int, help="at most this many detections per frame")
    parser.add_argument("--limit", type=int, help="stop after N frames")
    parser.add_argument("--realtime", action="store_true", default=None,
                        help="play files at their own frame rate, dropping frames when slower (like a camera)")
    parser.add_argument("--device-id", help="stable device id for outputs (default: host name)")
    parser.add_argument("--stats-interval", type=float, help="seconds between stats (0: only at the end)")
    for module in sink_registry.modules():
        module.add_arguments(parser)


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The flags that were given, as a nested config layer."""
    tree: dict = {}
    flags = {"model": "model.path", "backend": "model.backend", "threads": "model.threads",
             "legacy": "model.legacy", "conf": "detect.conf", "nms": "detect.iou", "agnostic": "detect.agnostic",
             "max_det": "detect.max_det", "limit": "source.limit", "realtime": "source.realtime",
             "device_id": "runtime.device", "stats_interval": "runtime.stats_interval_s"}
    for flag, key in flags.items():
        value = getattr(args, flag, None)
        if value is not None:
            _set(tree, key, value)
    if args.img_size:
        _set(tree, "model.input_size", (args.img_size * 2)[:2])
    if args.classes:
        _set(tree, "detect.classes", [c.strip() for c in args.classes.split(",") if c.strip()])
    if args.camera is not None:
        _set(tree, "camera.index", args.camera)
        _set(tree, "source.uri", "camera")
    if args.source:
        _set(tree, "source.uri", args.source)
    if args.demo:
        _set(tree, "source.uri", "synthetic")
        if not args.model:
            _set(tree, "model.path", str(demo_model()))
    for module in sink_registry.modules():
        section = module.section_from_args(args)
        if section is not None:
            _set(tree, f"outputs.{module.NAME}", section)
    return tree


def demo_model() -> Path:
    """The model bundle shipped in the package for `--demo`."""
    demo = resources.files("edge_yolox").joinpath("demo")
    bundles = sorted(p for p in demo.iterdir() if p.is_dir()) if demo.is_dir() else []
    if not bundles:
        raise ConfigError("--demo: this installation has no demo model (edge_yolox/demo/); pass --model PATH")
    return Path(str(bundles[0]))


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.board, args.config, overrides_from_args(args))


# ---- commands


def cmd_run(args: argparse.Namespace) -> int:
    from edge_yolox.pipeline import run

    config = config_from_args(args)
    logging.getLogger().setLevel(_level(args, config))
    return run(config)


def cmd_bench(args: argparse.Namespace) -> int:
    from edge_yolox.benchmark import bench, format_table

    overrides: dict = {"source": {"uri": args.source or "synthetic", "realtime": False}}
    _set(overrides, "model.path", args.model)
    if args.threads:
        _set(overrides, "model.threads", args.threads)
    if args.backend:
        _set(overrides, "model.backend", args.backend)
    config = load_config(args.board, args.config, overrides)
    result = bench(config, frames=args.frames, warmup=args.warmup)
    print(format_table(result))
    return 0


def cmd_boards(args: argparse.Namespace) -> int:
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
    bench.add_argument("--frames", type=number(int, 1), default=100, help="frames to time (default 100)")
    bench.add_argument("--warmup", type=number(int, 0), default=5)
    bench.set_defaults(func=cmd_bench)
    sub.add_parser("boards", help="list the board profiles").set_defaults(func=cmd_boards)
    sub.add_parser("doctor", help="what works here: backends, cameras, extras").set_defaults(func=cmd_doctor)
    service = importlib.import_module("edge_yolox.service")
    if hasattr(service, "add_parser"):  # added by the device work (systemd unit install/status)
        service_parser = service.add_parser(sub)
        if service_parser is not None and service_parser.get_default("func") is None and hasattr(service, "run"):
            service_parser.set_defaults(func=service.run)
    for name in FORWARDED:
        sub.add_parser(name, help=f"{name} (needs the [train] extra)", add_help=False)
    return parser


def _level(args: argparse.Namespace, config: Optional[Config] = None) -> int:
    if args.verbose:
        return logging.DEBUG
    if args.quiet:
        return logging.WARNING
    return getattr(logging, config.runtime.log_level.upper()) if config else logging.INFO


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
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
