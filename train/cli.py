"""`edge-yolox train | eval | export | quantize-report` (edge_yolox.cli forwards them here, command name first).

Nothing here imports torch at module level: a command imports it when it needs it, and says how to install it
when it is missing (evaluating an ONNX/NCNN/TFLite model needs no torch at all).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional

from edge_yolox.arguments import Parser, fraction, number
from edge_yolox.errors import ConfigError, EdgeYoloxError, one_line

from .export.registry import FORMATS, PRECISIONS, calib_methods, export_bundle

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")
INSTALL_HINT = "pip install 'edge-yolox[train]'"


def require_torch(what: str) -> None:
    try:
        importlib.import_module("torch")
    except ImportError:
        raise EdgeYoloxError(f"{what} needs PyTorch, which is not installed here: {INSTALL_HINT}") from None


def parse_size(text: str) -> tuple[int, int]:
    """'416' or '416,320' / '416x320' (h, w); multiples of 32."""
    try:
        values = [int(v) for v in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size like 416 or 384,640") from None
    if len(values) not in (1, 2) or any(v <= 0 or v % 32 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive multiples of 32")
    return (values[0], values[-1])


# ----------------------------------------------------------------------------- train


def run_train(argv: list[str]) -> int:
    """The trainer has its own argument parser (edge_yolox.train.trainer)."""
    require_torch("`edge-yolox train`")
    try:
        trainer = importlib.import_module("edge_yolox.train.trainer")
    except ImportError as exc:
        raise EdgeYoloxError(f"the trainer is not available ({exc})") from None
    return int(trainer.main(argv) or 0)


# ----------------------------------------------------------------------------- end-to-end checkpoints


def add_nms_head_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nms-head", action="store_true",
                   help="an end-to-end (--e2e) checkpoint: use its plain head, without the selector, with NMS (the "
                        "same detector: the selector's stop-gradient never changed it)")


def apply_nms_head(args: argparse.Namespace, model, path) -> None:
    """--nms-head: score with the plain head of an end-to-end model (which then needs NMS)."""
    if args.nms_head:
        if not model.head.e2e:
            raise ConfigError(f"--nms-head: {path} has no end-to-end selector; its head already needs NMS")
        model.head.use_pss = False


# ----------------------------------------------------------------------------- eval


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    from .evaluate import OFFICIAL_CONF, OFFICIAL_IOU

    p.add_argument("--model", required=True, help="a .pth checkpoint, or an ONNX/NCNN/TFLite/OpenVINO model or bundle")
    p.add_argument("--data", required=True, help="COCO .json / folder with annotations/, YOLO data.yaml, VOC folder")
    p.add_argument("--split", default="val", help="dataset split for YOLO/VOC layouts (default val)")
    p.add_argument("--json", help="write the metrics here (AP, AP50, AP75, APs, APm, APl as fractions, images, model)")
    p.add_argument("--variant", help="YOLOX variant of a .pth (default: inferred from its tensor shapes)")
    p.add_argument("--img-size", type=parse_size, help="input size, e.g. 416 or 384,640 (default: the model's)")
    p.add_argument("--per-class", action="store_true", help="print the AP of every class")
    p.add_argument("--conf", type=fraction, default=OFFICIAL_CONF, help=f"score threshold (official {OFFICIAL_CONF})")
    p.add_argument("--iou", type=fraction, default=OFFICIAL_IOU, help=f"per-class NMS IoU (official {OFFICIAL_IOU})")
    p.add_argument("--nms", choices=("on", "off"),
                   help="force NMS on or off (default: the model's own: on, but off for an end-to-end model)")
    add_nms_head_argument(p)
    p.add_argument("--limit", type=number(int, 0), default=0, help="evaluate only the first N images")
    p.add_argument("--backend", help="runtime backend for non-PyTorch models (onnxruntime, ncnn, tflite, openvino)")
    p.add_argument("--threads", type=number(int, 1, 256), help="CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_eval(args: argparse.Namespace) -> int:
    from .data.datasets import open_dataset
    from .evaluate import detector_detect_fn, evaluate, evaluate_dataset, format_metrics

    dataset = open_dataset(args.data, args.split)
    path = Path(args.model)
    progress = not args.no_progress
    nms = None if args.nms is None else args.nms == "on"
    if path.suffix in TORCH_SUFFIXES:
        require_torch("evaluating a PyTorch checkpoint")
        import torch

        from .checkpoint import model_from_checkpoint
        from .models import default_size, needs_nms

        if args.threads:
            torch.set_num_threads(args.threads)
        loaded = model_from_checkpoint(path, args.variant)
        apply_nms_head(args, loaded.model, path)
        nms = needs_nms(loaded.model) if nms is None else nms
        size = args.img_size or default_size(loaded.variant)
        description = f"YOLOX-{loaded.variant} PyTorch fp32 {size[0]}x{size[1]} ({path})"
        metrics = evaluate_dataset(loaded.model, dataset, size, conf=args.conf, iou=args.iou, limit=args.limit,
                                   per_class=args.per_class, progress=progress, nms=nms)
    else:
        from edge_yolox.detector import Detector

        if args.nms_head:
            raise ConfigError(f"--nms-head: {path} is an exported model; export the plain head with "
                              "`edge-yolox export --nms-head`")
        options = {"input_size": args.img_size} if args.img_size else {}
        detector = Detector(path, conf=args.conf, iou=args.iou, backend=args.backend, threads=args.threads, nms=nms,
                            **options)
        nms = detector.nms
        meta = detector.meta
        if meta.num_classes != dataset.num_classes:
            raise ConfigError(f"{path} predicts {meta.num_classes} classes but {dataset.source} has "
                              f"{dataset.num_classes}")
        size = tuple(meta.input_size)
        description = f"{meta.variant} {detector.backend.name} {meta.precision} {size[0]}x{size[1]} ({path})"
        try:
            metrics = evaluate(detector_detect_fn(detector), dataset, limit=args.limit, per_class=args.per_class,
                               progress=progress)
        finally:
            detector.close()
    setting = f"NMS {args.iou}" if nms else "no NMS"
    print(f"{description} on {metrics['images']} images of {dataset.source} (conf {args.conf}, {setting})")
    print(format_metrics(metrics))
    if args.json:
        record = {**metrics, "model": description, "data": str(args.data), "input_size": list(size),
                  "conf": args.conf, "iou": args.iou, "nms": nms}
        try:
            Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        except OSError as exc:
            raise ConfigError(f"--json {args.json}: cannot write ({exc})") from None
    return 0


# ----------------------------------------------------------------------------- export


def export_options(args: argparse.Namespace) -> dict:
    """The --format writer's keywords, from the flags (see export.registry.export_bundle)."""
    if args.format == "onnx":
        return {"layout": args.layout, "opset": args.opset, "dynamic": args.dynamic, "stem": args.stem}
    options = {"precision": args.precision, "calib": args.calib, "calib_n": args.calib_n,
               "calib_method": args.calib_method or calib_methods()[args.format][0]}
    return {**options, "threads": args.threads or 1} if args.format == "ncnn" else options


def check_export_args(args: argparse.Namespace) -> None:
    """Flag combinations argparse cannot check alone; each ends in one clear message."""
    if args.precision not in PRECISIONS[args.format]:
        raise ConfigError(f"--precision {args.precision}: {args.format} exports take "
                          f"{', '.join(PRECISIONS[args.format])}")
    if args.precision != "int8":
        if args.calib or args.calib_method:
            raise ConfigError("--calib/--calib-method only apply to --precision int8")
        return
    if not args.calib:
        raise ConfigError("--precision int8 needs --calib DIR: a folder of real images like those the model will "
                          "see (e.g. a dataset's images/)")
    methods = calib_methods()[args.format]
    if args.calib_method and args.calib_method not in methods:
        raise ConfigError(f"--calib-method {args.calib_method}: {args.format} INT8 takes {', '.join(methods)}")
    from .export.calibration import find_images

    find_images(args.calib)  # a missing or image-less folder fails before the model is loaded


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    require_torch("`edge-yolox export`")
    from .export.graph import LAYOUTS, STEMS
    from .export.onnx import DEFAULT_OPSET

    p.add_argument("--weights", required=True, help="a .pth checkpoint (official layout or bare state_dict)")
    p.add_argument("--variant", help="YOLOX variant (default: inferred from the checkpoint's tensor shapes)")
    p.add_argument("--format", default="onnx", choices=sorted(FORMATS), help="output format (default onnx)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--img-size", type=parse_size, help="input size, e.g. 416 or 384,640 (default: the variant's)")
    p.add_argument("--names", help="class names: a .txt/.names file (one per line), a data.yaml, or a dataset")
    p.add_argument("--layout", choices=LAYOUTS, default="split",
                   help="split: reg/obj/cls per stride (default, quantizes well); single: official [1,N,5+C]")
    p.add_argument("--opset", type=number(int, 11, 30), default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--dynamic", action="store_true", help="dynamic input height/width")
    p.add_argument("--stem", choices=STEMS, default="slice",
                   help="ONNX: Focus as slices (default) or pixel_unshuffle + permuted conv (for pnnx)")
    add_nms_head_argument(p)
    add_precision_arguments(p)


def add_precision_arguments(p: argparse.ArgumentParser) -> None:
    from .export.calibration import DEFAULT_CALIB_N

    methods = sorted({m for ms in calib_methods().values() for m in ms})
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="fp32 (default); fp16 (ncnn, openvino); int8 (ncnn, tflite, openvino; needs --calib)")
    p.add_argument("--calib", help="INT8: folder of real calibration images (searched recursively)")
    p.add_argument("--calib-n", type=number(int, 1), default=DEFAULT_CALIB_N,
                   help=f"INT8: calibrate on this many images, a seeded sample (default {DEFAULT_CALIB_N})")
    p.add_argument("--calib-method", help=f"INT8 activation ranges: {', '.join(methods)} "
                                          "(default: kl for ncnn, minmax for tflite, performance for openvino)")
    p.add_argument("--threads", type=number(int, 1, 256), help="CPU threads for NCNN calibration (default 1)")


def run_export(args: argparse.Namespace) -> int:
    from .checkpoint import model_from_checkpoint
    from .export import base_meta, class_names
    from .models import default_size

    check_export_args(args)
    loaded = model_from_checkpoint(args.weights, args.variant)
    apply_nms_head(args, loaded.model, args.weights)
    num_classes = loaded.model.head.num_classes
    names = class_names(args.names, loaded.class_names, num_classes)
    size = args.img_size or default_size(loaded.variant)
    meta = base_meta(loaded.variant, num_classes, size, names, source=Path(args.weights).name)
    out = export_bundle(args.format, loaded.model, Path(args.out), meta, **export_options(args))
    print(f"wrote {out} ({args.format} {args.precision}, YOLOX-{loaded.variant}, {size[0]}x{size[1]}, "
          f"{num_classes} classes)")
    return 0


# ----------------------------------------------------------------------------- quantize-report


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    require_torch("`edge-yolox quantize-report`")
    from .export.calibration import DEFAULT_CALIB_N

    p.add_argument("--weights", required=True, help="a .pth checkpoint")
    p.add_argument("--variant", help="YOLOX variant (default: inferred from the checkpoint)")
    p.add_argument("--data", required=True, help="evaluation dataset (as for `edge-yolox eval`)")
    p.add_argument("--split", default="val", help="dataset split for YOLO/VOC layouts (default val)")
    p.add_argument("--calib", required=True, help="folder of real calibration images")
    p.add_argument("--calib-n", type=number(int, 1), default=DEFAULT_CALIB_N,
                   help=f"calibration images (default {DEFAULT_CALIB_N})")
    p.add_argument("--img-size", type=parse_size, help="input size (default: the variant's)")
    p.add_argument("--out", default="quantize-report", help="folder for the bundles, report.md and report.json")
    p.add_argument("--limit", type=number(int, 0), default=0, help="evaluate only the first N images")
    p.add_argument("--runs", type=number(int, 1), default=30, help="timed runs per latency figure (median; default 30)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_report(args: argparse.Namespace) -> int:
    from .export.report import quantize_report

    quantize_report(args.weights, args.data, args.calib, Path(args.out), variant=args.variant, split=args.split,
                    calib_n=args.calib_n, input_size=args.img_size, limit=args.limit, runs=args.runs,
                    progress=not args.no_progress)
    return 0


# ----------------------------------------------------------------------------- dispatch

# name -> (help, add_arguments, run); `train` parses its own arguments
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "eval": ("COCO metrics (pycocotools) of a .pth or an exported model on a dataset", add_eval_arguments, run_eval),
    "export": ("write a model bundle (ONNX, NCNN, TFLite; fp32/fp16/int8) from a .pth", add_export_arguments,
               run_export),
    "quantize-report": ("export FP32 and INT8 bundles, evaluate them and the .pth on one dataset, and tabulate "
                        "AP, size and latency", add_report_arguments, run_report),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv else ""
    try:
        if name == "train":
            return run_train(argv[1:])
        if name not in COMMANDS:
            print(f"usage: edge-yolox {{train,{','.join(COMMANDS)}}} ...", file=sys.stderr)
            return 2
        description, add_arguments, run = COMMANDS[name]
        parser = Parser(prog=f"edge-yolox {name}", description=description)
        add_arguments(parser)
        return run(parser.parse_args(argv[1:]))
    except EdgeYoloxError as exc:
        print(f"edge-yolox {name}: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
