"""Build edge-yolox: the pybind11 core from csrc/ through CMake, `train/` as `edge_yolox.train`,
`boards/` as package data."""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str, source_dir: Path = ROOT):
        super().__init__(name, sources=[])
        self.source_dir = str(source_dir)


class CMakeBuild(build_ext):
    """Configure and build one CMake target per extension, writing it where setuptools expects it
    (the build tree for wheels, the source tree for editable installs)."""

    def build_extension(self, ext: CMakeExtension) -> None:
        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_type = os.environ.get("CMAKE_BUILD_TYPE", "Release")
        build_dir = Path(self.build_temp) / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        import pybind11

        configure = [
            "cmake",
            ext.source_dir,
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={build_type}",
        ]
        # Cross builds (scripts/build-wheels.sh) pass a toolchain file and extra definitions this way,
        # because pip on older Pythons cannot forward -C options.
        configure += os.environ.get("EDGE_YOLOX_CMAKE_ARGS", "").split()
        try:
            import ninja

            # Named explicitly: a build tree reused by a later `pip install .` would otherwise keep the path
            # of the previous, since deleted, isolated build environment's ninja.
            configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={Path(ninja.BIN_DIR) / 'ninja'}"]
        except ImportError:
            pass
        subprocess.run(configure, cwd=build_dir, check=True)
        subprocess.run(["cmake", "--build", ".", "--config", build_type, "-j", str(os.cpu_count() or 2)],
                       cwd=build_dir, check=True)


def read_version() -> str:
    for line in (ROOT / "edge_yolox" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("__version__ not found in edge_yolox/__init__.py")


# OpenCV from PyPI is not a requirement on ARM Linux (Raspberry Pi OS, Jetson): there the system's must be the one
# imported. picamera2 and simplejpeg from apt are built against Debian's numpy (1.24 on bookworm), pip's
# opencv-python-headless >= 4.12 requires numpy 2 and would replace it, and a pip cv2 in the venv would shadow the
# system one (python3-opencv; JetPack's, the one with GStreamer). No requirement can be "satisfied" by apt's cv2 (it
# has no pip metadata), so ARM users without a system OpenCV add the `opencv` extra. numpy >= 1.21 accepts Debian's.
OPENCV = "opencv-python-headless>=4.5"
# The converter and INT8 stack is capped at the versions CI tested (ncnn's int8 kernels and pnnx's graph rewrites
# change between releases and move INT8 scores); raise a cap only after the INT8 tests pass on the new release.
NCNN = "ncnn>=1.0.20240410,<=1.0.20261020"
LITERT = "ai-edge-litert>=1.2,<=2.3.0"
OPENVINO = "openvino>=2024.0,<=2026.4.1"
NOT_ARM = 'platform_machine != "aarch64" and platform_machine != "armv7l"'

extras = {
    "opencv": [OPENCV],
    "onnx": ["onnxruntime>=1.16"],
    "ncnn": [NCNN],
    "tflite": [LITERT],
    "openvino": [OPENVINO],
    "mqtt": ["paho-mqtt>=2.0"],
    "serial": ["pyserial>=3.5"],
    "train": [
        "torch==2.13.0",
        "pycocotools>=2.0.7",
        "tqdm>=4.60",
        "onnx>=1.15",
        "onnxslim>=0.1.30",
        "onnxruntime>=1.16",
        "matplotlib>=3.7",
    ],
    # NCNN (pnnx), TFLite (litert-torch + ai-edge-quantizer, no TensorFlow) and OpenVINO (NNCF) exports with INT8
    "export": ["pnnx>=20240410,<=20261020", "litert-torch>=0.10,<=0.10.0", "ai-edge-quantizer>=0.10,<=0.10.0",
               "nncf>=3.0,<=3.4.0", NCNN, LITERT, OPENVINO],
    # motmetrics: the tracking evaluation (tests/test_tracking_eval.py, bench/track_eval.py); 1.4.0 is the version
    # tested (with pandas 3.1 and numpy 2.4: its iou_matrix uses np.asfarray, gone in numpy 2, so we call boxiou)
    "test": ["pytest>=7", "hypothesis>=6.80", "ruff>=0.4", "motmetrics==1.4.0"],
}
extras["all"] = sorted({req for reqs in extras.values() for req in reqs})

setup(
    name="edge-yolox",
    version=read_version(),
    description="YOLOX from training to Raspberry Pi and Jetson: export, INT8, and an on-device runtime",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=[
        "edge_yolox",
        "edge_yolox.backends",
        "edge_yolox.sources",
        "edge_yolox.sinks",
        "edge_yolox.boards",
        "edge_yolox.train",
        "edge_yolox.train.models",
        "edge_yolox.train.data",
        "edge_yolox.train.export",
    ],
    package_dir={"edge_yolox": "edge_yolox", "edge_yolox.train": "train", "edge_yolox.boards": "boards"},
    package_data={"edge_yolox.boards": ["*.yaml"], "edge_yolox": ["demo/**/*"]},
    ext_modules=[CMakeExtension("edge_yolox._core")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=["numpy>=1.21", f"{OPENCV}; {NOT_ARM}", "pyyaml>=5.4"],
    extras_require=extras,
    entry_points={"console_scripts": ["edge-yolox=edge_yolox.cli:main"]},
    zip_safe=False,
)
