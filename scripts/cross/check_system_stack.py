"""Check edge-yolox installed the way the README tells a Raspberry Pi user to: in a venv made with
--system-site-packages over Debian's python3-numpy and python3-opencv (run by scripts/test-aarch64.sh --pi-os,
under qemu, with the venv's Python).

  python check_system_stack.py --venv VENV --numpy 1.24 --opencv 4.6 --cli VENV/bin/edge-yolox --ncnn-model DIR
         --image IMAGE [--arch aarch64]

Checks that pip put neither numpy nor OpenCV into the venv, that `edge-yolox run` (NCNN on the image) works, that
numpy and cv2 were imported from Debian's dist-packages in the expected versions, and that `edge-yolox doctor`
reports them as the system's with no failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from check_wheel import check_core, check_run, run_cli  # same folder: sys.path[0]


def check_venv(venv: Path) -> None:
    site = next(venv.glob("lib/python3*/site-packages"))
    shadowing = sorted(p.name for p in site.iterdir() if p.name.lower().startswith(("numpy", "cv2", "opencv")))
    if shadowing:
        sys.exit(f"FAIL: pip installed {shadowing} into the venv: they shadow Debian's python3-numpy/python3-opencv")
    print(f"venv {site}: no numpy or OpenCV of its own")


def check_imported(name: str, version: str) -> None:
    module = sys.modules.get(name)
    if module is None:
        sys.exit(f"FAIL: edge-yolox run did not import {name}")
    if "/dist-packages/" not in module.__file__ or not module.__version__.startswith(version):
        sys.exit(f"FAIL: {name} {module.__version__} from {module.__file__}; expected Debian's {version}.x "
                 f"from dist-packages")
    print(f"{name} {module.__version__} from {module.__file__} (Debian's)")


def check_doctor(cli: Path) -> None:
    """`edge-yolox doctor` in this process (no child processes under qemu without binfmt)."""
    code, report = run_cli(cli, "doctor")
    print(report, end="")
    rows = {line.split()[1]: line for line in report.splitlines() if line.startswith("  ")}
    if code not in (0, None) or " FAIL " in report:
        sys.exit(f"FAIL: edge-yolox doctor exited {code}")
    for name in ("numpy", "opencv"):
        if "(system, " not in rows.get(name, ""):
            sys.exit(f"FAIL: doctor does not report {name} as the system's: {rows.get(name)!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--numpy", required=True, help="the version prefix of the distribution's numpy")
    parser.add_argument("--opencv", required=True, help="the version prefix of the distribution's OpenCV")
    parser.add_argument("--arch", default="aarch64")
    parser.add_argument("--cli", type=Path, required=True)
    parser.add_argument("--ncnn-model", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    args = parser.parse_args()
    check_venv(args.venv)
    check_core(args.arch)
    check_run(args.cli, args.ncnn_model, args.image)
    check_imported("numpy", args.numpy)
    check_imported("cv2", args.opencv)
    check_doctor(args.cli)
    print("OK")


if __name__ == "__main__":
    main()
