"""Packaging: the runtime never pulls in torch, and `pip install .` / `pip install -e .` both work."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import edge_yolox

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "tensorflow", "pnnx", "litert_torch", "ai_edge_torch", "onnx2tf")


def runtime_modules() -> list[str]:
    """Every module of the runtime package (edge_yolox.train is the torch side and is left out)."""
    return sorted(
        m.name for m in pkgutil.walk_packages(edge_yolox.__path__, "edge_yolox.")
        if not m.name.startswith("edge_yolox.train")
    )


def test_runtime_never_imports_torch():
    code = (
        "import importlib, sys\n"
        f"for name in {runtime_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_train_subpackage_importable():
    import edge_yolox.train

    assert Path(edge_yolox.train.__file__).parent.name in ("train", "train")


def _fresh_venv(tmp_path: Path) -> Path:
    """A new venv that sees this environment's dependencies (numpy, OpenCV, ...) but not edge_yolox."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # A plain path line: the outer site-packages is searched after the venv's own, and its .pth files
    # (including an editable edge_yolox finder) are not run.
    Path(site, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable"])
def test_pip_install_in_fresh_venv(tmp_path, editable):
    python = _fresh_venv(tmp_path)
    target = ["-e", str(ROOT)] if editable else [str(ROOT)]
    # Build isolation on, as for a user: the build requirements come from pyproject.toml.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", *target],
                   check=True, cwd=tmp_path, env={**os.environ, "PIP_NO_INPUT": "1"})
    check = (
        "import edge_yolox, edge_yolox.train, edge_yolox._core, importlib.resources as r, sys\n"
        "boards = sorted(p.name for p in r.files('edge_yolox.boards').iterdir() if p.name.endswith('.yaml'))\n"
        "print(edge_yolox.__file__); print(edge_yolox.train.__file__); print(boards)\n"
        "assert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([str(python), "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    package, train, boards = out.stdout.splitlines()
    if editable:
        assert Path(package).parent == ROOT / "edge_yolox" and Path(train).parent == ROOT / "train"
    else:
        assert str(tmp_path) in package and Path(train).parent.name == "train"
        assert Path(train).parent.parent == Path(package).parent
    assert "x86.yaml" in boards
