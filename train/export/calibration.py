"""Calibration images for INT8: real pictures, letterboxed exactly as the runtime feeds the model."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np

from edge_yolox.errors import ConfigError, ModelError
from edge_yolox.preprocess import letterbox

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_CALIB_N = 200


def check_request(backend: str, precision: str, precisions: tuple[str, ...], calib, method: str,
                  methods: tuple[str, ...]) -> None:
    """An exporter's precision and calibration arguments, checked before any work."""
    if precision not in precisions:
        raise ValueError(f"{backend} precision must be one of {', '.join(precisions)}, got {precision!r}")
    if precision == "int8" and calib is None:
        raise ModelError("INT8 needs calibration images: pass --calib DIR (real images like those it will see)")
    if precision == "int8" and method not in methods:
        raise ModelError(f"{backend} calibration method must be one of {', '.join(methods)}, got {method!r}")


def find_images(folder: str | Path) -> list[Path]:
    """Every image file under `folder` (recursively, so a dataset root with images/ works), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--calib {folder}: not a directory (give a folder of real images, e.g. a dataset's images/)")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ConfigError(f"--calib {folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files)")
    return paths


def pick(paths: list[Path], n: int, seed: int = 0) -> list[Path]:
    """`n` of `paths`, a seeded sample so a re-run calibrates on the same images."""
    if n <= 0:
        raise ConfigError(f"--calib-n must be a positive number of images, got {n}")
    if n >= len(paths):
        return list(paths)
    return sorted(random.Random(seed).sample(paths, n))


def load_calibration(
    folder: str | Path, n: int, input_size: tuple[int, int], seed: int = 0, progress: bool = True
) -> list[np.ndarray]:
    """Up to `n` images from `folder`, each letterboxed to `input_size` (h, w): H×W×3 uint8 BGR.

    Unreadable files are an error, not skipped: calibrating on fewer or different images than asked
    changes the quantized model silently.
    """
    from tqdm import tqdm

    paths = pick(find_images(folder), n, seed)
    images, unreadable = [], []
    for path in tqdm(paths, desc="calibration images", unit="img", disable=not progress, leave=False):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None or frame.size == 0:
            unreadable.append(path)
            continue
        images.append(letterbox(frame, input_size)[0])
    if unreadable:
        shown = ", ".join(str(p) for p in unreadable[:3]) + (" ..." if len(unreadable) > 3 else "")
        raise ConfigError(f"--calib {folder}: {len(unreadable)} of {len(paths)} images are unreadable "
                          f"(corrupt or not images): {shown}; remove them or pick another folder")
    return images
