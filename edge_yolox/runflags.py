"""The flags of `edge-yolox run` and the config layer they make: shared by `run` and `service install`, which
renders the same run as a unit."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from edge_yolox import sinks as sink_registry
from edge_yolox.arguments import number
from edge_yolox.backends.onnxruntime import PROVIDERS
from edge_yolox.config import BACKEND_NAMES, COMMAND_LINE, board_names
from edge_yolox.errors import ConfigError
from edge_yolox.postprocess import CONF, IOU, MAX_DET

# Where the accelerator flags of `run` and `bench` land: flag -> config key
ACCELERATOR_KEYS = {"gpu": "model.options.ncnn.gpu", "provider": "model.options.onnxruntime.provider"}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
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
    add_accelerator_arguments(parser)
    parser.add_argument("--img-size", type=int, nargs="+", metavar="PX",
                        help="model input size (h [w]) for models with a dynamic input")
    parser.add_argument("--legacy", action="store_true", default=None,
                        help="pre-0.1.1 YOLOX weights: RGB/255/mean-std preprocessing")
    parser.add_argument("--conf", type=float, help=f"score threshold (default {CONF})")
    parser.add_argument("--nms", type=float, help=f"NMS IoU threshold (default {IOU})")
    parser.add_argument("--agnostic", action="store_true", default=None, help="class-agnostic NMS")
    parser.add_argument("--classes", help="keep only these classes, comma-separated names or ids")
    parser.add_argument("--max-det", type=int, help=f"at most this many detections per frame (default {MAX_DET})")
    parser.add_argument("--limit", type=int, help="stop after N frames")
    parser.add_argument("--realtime", action="store_true", default=None,
                        help="play files at their own frame rate, dropping frames when slower (like a camera)")
    parser.add_argument("--device-id", help="stable device id for outputs (default: host name)")
    parser.add_argument("--stats-interval", type=float, help="seconds between stats (0: only at the end)")
    parser.add_argument("--state-dir", help="where line totals are kept across restarts (default: "
                                            "$STATE_DIRECTORY, else ~/.local/state/edge-yolox)")
    track = parser.add_argument_group("tracking, zones and lines (zones or lines turn tracking on)")
    track.add_argument("--track", action="store_true", default=None,
                       help="track objects (ByteTrack): track ids, new/update/end events")
    track.add_argument("--zones", metavar="FILE", help="YAML with zones: and/or lines: sections")
    track.add_argument("--zone", action="append", metavar="NAME=X,Y,...",
                       help="a zone polygon (>= 3 points; 0-1 fractions of the frame or pixels); repeatable")
    track.add_argument("--line", action="append", metavar="NAME=X1,Y1,X2,Y2",
                       help="a counting line; \"in\" is a crossing to the left of (x1,y1)->(x2,y2); repeatable")
    for module in sink_registry.modules():
        module.add_arguments(parser)


def add_accelerator_arguments(parser: argparse.ArgumentParser) -> None:
    """`--gpu [N]` and `--provider NAME` (run and bench): each falls back to the CPU with one log line."""
    parser.add_argument("--gpu", type=number(int, 0, 63), nargs="?", const=0, metavar="N",
                        help="run ncnn models on Vulkan device N (default 0; the CPU when there is none)")
    parser.add_argument("--provider", choices=["auto", *PROVIDERS],
                        help="onnxruntime execution provider (default auto: TensorRT, CUDA, CPU, as installed)")


def set_key(tree: dict, dotted: str, value: Any) -> None:
    """tree["a"]["b"] = value for "a.b", creating the sections on the way."""
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
             "device_id": "runtime.device", "stats_interval": "runtime.stats_interval_s",
             "state_dir": "runtime.state_dir", "track": "track.enabled", **ACCELERATOR_KEYS}
    for flag, key in flags.items():
        value = getattr(args, flag, None)
        if value is not None:
            set_key(tree, key, value)
    if args.img_size:
        set_key(tree, "model.input_size", (args.img_size * 2)[:2])
    if args.classes:
        set_key(tree, "detect.classes", [c.strip() for c in args.classes.split(",") if c.strip()])
    if args.camera is not None:
        set_key(tree, "camera.index", args.camera)
        set_key(tree, "source.uri", "camera")
    if args.source:
        set_key(tree, "source.uri", args.source)
    if args.demo:  # with tracking, scripted traffic that enters, crosses and leaves (the bouncing scene never leaves)
        tracking = args.track or args.zones or args.zone or args.line
        set_key(tree, "source.uri", "synthetic:tracks" if tracking else "synthetic")
        if not args.model:
            set_key(tree, "model.path", str(demo_model()))
    for flag, kind, key in (("zone", "zones", "polygon"), ("line", "lines", "points")):
        for value in getattr(args, flag, None) or ():
            name, points = _named_points(f"--{flag}", value, 4 if flag == "line" else None)
            tree.setdefault(kind, {})[name] = {key: points}  # not set_key: a name may hold dots
    for module in sink_registry.modules():
        section = module.section_from_args(args)
        if section is not None:
            set_key(tree, f"outputs.{module.NAME}", section)
    return tree


def _named_points(flag: str, value: str, count: Optional[int]) -> tuple[str, list[list[float]]]:
    """NAME=x,y,x,y,... as (NAME, [[x, y], ...]); the config checks the name and the geometry."""
    name, _, numbers = value.partition("=")
    allowed = f"NAME={'X1,Y1,X2,Y2' if count else 'X,Y,X,Y,X,Y[,...]'}"
    try:
        values = [float(v) for v in numbers.split(",")]
    except ValueError:
        values = []
    if not name or not values or len(values) % 2 or (count and len(values) != count):
        raise ConfigError(f"{COMMAND_LINE}: {flag}: invalid value {value!r}; allowed: {allowed}")
    return name, [values[i:i + 2] for i in range(0, len(values), 2)]


def demo_model() -> Path:
    """The model bundle shipped in the package for `--demo`."""
    demo = resources.files("edge_yolox").joinpath("demo")
    bundles = sorted(p for p in demo.iterdir() if p.is_dir()) if demo.is_dir() else []
    if not bundles:
        raise ConfigError("--demo: this installation has no demo model (edge_yolox/demo/); pass --model PATH")
    return Path(str(bundles[0]))
