"""Check an installed edge-yolox wheel on its target (run by scripts/test-aarch64.sh under qemu).

Two steps, one file so both sides agree on the cases:
  python check_wheel.py record OUT.npz IMAGE ONNX_MODEL
      host: real ONNX outputs and the host build's detections
  python check_wheel.py check OUT.npz [--cli BIN/edge-yolox --ncnn-model DIR --image IMAGE]
      target: the core against the numpy reference and the host, then `edge-yolox run` with NCNN
`check` needs tests/reference.py (the numpy reference) importable: the test script puts tests/ on sys.path.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import runpy
import sys
from pathlib import Path

import numpy as np

INPUT_SIZE = (416, 416)
# (conf, iou, class_agnostic, multi_label): the README reference setting plus the dense paths of NMS.
CASES = [(0.3, 0.45, True, False), (0.01, 0.65, False, False), (0.05, 0.5, False, True)]
SOABI_TAIL = {"aarch64": "aarch64-linux-gnu", "armv7l": "arm-linux-gnueabihf", "x86_64": "x86_64-linux-gnu"}
EXPECTED_LABELS = {"dog", "bicycle", "car"}  # the NCNN model on dog.jpg (../shared/data/README.md)


def record(out: Path, image: Path, model: Path) -> None:
    """Real model outputs, recorded on the host with onnxruntime, plus the host build's detections."""
    import cv2
    import onnxruntime as ort

    import edge_yolox
    from edge_yolox.preprocess import letterbox, to_nchw

    frame = cv2.imread(str(image))
    if frame is None:
        sys.exit(f"record: cannot read image {image}")
    padded, ratio = letterbox(frame, INPUT_SIZE)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rows = session.run(None, {session.get_inputs()[0].name: to_nchw(padded)})[0]
    arrays = {"rows": rows, "ratio": np.float32(ratio), "frame_size": np.array(frame.shape[:2])}
    for i, case in enumerate(CASES):
        arrays[f"host_{i}"] = edge_yolox.postprocess(rows, INPUT_SIZE, **options(case, ratio, frame.shape[:2]))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)


def options(case: tuple, ratio: float, frame_size) -> dict:
    conf, iou, agnostic, multi_label = case
    return dict(conf=conf, iou=iou, class_agnostic=agnostic, multi_label=multi_label, ratio=float(ratio),
                frame_size=tuple(int(v) for v in frame_size))


def check_core(arch: str) -> None:
    import edge_yolox

    core = sys.modules["edge_yolox._core"]  # loaded by the import above
    print(f"python {platform.python_version()} on {platform.machine()}, edge_yolox {edge_yolox.__version__}, "
          f"core {core.__file__}")
    if platform.machine() != arch or not Path(core.__file__).name.endswith(f"-{SOABI_TAIL[arch]}.so"):
        sys.exit(f"FAIL: expected the {arch} core under an {arch} Python, got {core.__file__} "
                 f"on {platform.machine()}")


def check_errors() -> None:
    """C++ exceptions reach Python as ValueError with their message (LTO once turned them into SystemError)."""
    import edge_yolox

    try:
        edge_yolox.postprocess(np.zeros((10, 4), np.float32), INPUT_SIZE)
    except ValueError as e:
        if "5 + num_classes" not in str(e):
            sys.exit(f"FAIL: the core's ValueError lost its message: {e!r}")
        print(f"bad input raises ValueError: {e}")
        return
    sys.exit("FAIL: a [10, 4] output did not raise ValueError")


def check_postprocess(recording: Path) -> None:
    """The wheel's C++ core against the numpy reference (both on the target) and the host's results."""
    import reference

    import edge_yolox

    data = np.load(recording)
    rows, ratio, frame_size = data["rows"], float(data["ratio"]), data["frame_size"]
    for i, case in enumerate(CASES):
        opts = options(case, ratio, frame_size)
        got = edge_yolox.postprocess(rows, INPUT_SIZE, **opts)
        for name, want in (("numpy reference", reference.postprocess(rows, INPUT_SIZE, **opts)),
                           ("host C++ build", data[f"host_{i}"])):
            if got.shape != want.shape or not np.allclose(got, want, atol=1e-3, rtol=1e-5):
                sys.exit(f"FAIL: postprocess {opts} differs from the {name}: {len(got)} vs {len(want)} "
                         f"detections\n{got[:5]}\n{want[:5]}")
        print(f"postprocess conf={case[0]} iou={case[1]} agnostic={case[2]} multi_label={case[3]}: "
              f"{len(got)} detections, equal to the numpy reference and the host")


def check_run(cli: Path, model: Path, image: Path) -> None:
    """`edge-yolox run` end to end through the wheel's console script: NCNN (the target's wheel) on the real
    model and image. In this process: under qemu without binfmt a child aarch64 process cannot be started."""
    code, stdout = run_cli(cli, "-q", "run", "--board", "rpi4", "--model", str(model), "--source", str(image))
    if code not in (0, None):
        sys.exit(f"FAIL: {' '.join(sys.argv)} exited {code} (its stderr is above)")
    frames = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if len(frames) != 1:
        sys.exit(f"FAIL: expected one JSON line for one image, got {len(frames)}:\n{stdout[-2000:]}")
    found = {d["label"] for d in frames[0]["detections"]}
    if not EXPECTED_LABELS <= found:
        sys.exit(f"FAIL: edge-yolox run found {sorted(found)}, expected at least {sorted(EXPECTED_LABELS)}")
    print(f"edge-yolox run (ncnn, {frames[0]['model']}): "
          + ", ".join(f"{d['label']} {d['score']:.3f}" for d in frames[0]["detections"])
          + f"; latency {frames[0]['latency_ms']}")


def run_cli(cli: Path, *args: str) -> tuple[object, str]:
    """(exit code, stdout) of the console script `cli ARGS`, run in this process."""
    sys.argv = [str(cli), *args]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(str(cli), run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code
    return code, out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out", type=Path)
    rec.add_argument("image", type=Path)
    rec.add_argument("model", type=Path)
    chk = sub.add_parser("check")
    chk.add_argument("recording", type=Path)
    chk.add_argument("--arch", default="aarch64", help="the machine the wheel is for (default aarch64)")
    chk.add_argument("--cli", type=Path, help="the installed edge-yolox console script")
    chk.add_argument("--ncnn-model", type=Path)
    chk.add_argument("--image", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.out, args.image, args.model)
        return
    check_core(args.arch)
    check_errors()
    check_postprocess(args.recording)
    if args.cli:
        check_run(args.cli, args.ncnn_model, args.image)
    print("OK")


if __name__ == "__main__":
    main()
