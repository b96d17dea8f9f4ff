"""Throw ≥ 10,000 random and malformed inputs at the C++ core: it must answer or raise, never crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FUZZ = textwrap.dedent(
    """
    import sys, warnings
    import numpy as np
    import edge_yolox

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(int(sys.argv[1]))
    DTYPES = [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int64, bool, object, np.complex64]
    SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38, -1e38, 1e-45, 88.0, -88.0], np.float64)

    def random_array(shape):
        a = rng.normal(0, rng.choice([1, 10, 1e6]), shape)
        if a.size and rng.random() < 0.5:
            flat = a.reshape(-1)
            idx = rng.integers(0, flat.size, max(1, flat.size // 20))
            flat[idx] = rng.choice(SPECIAL, idx.size)
        dtype = DTYPES[rng.integers(len(DTYPES))] if rng.random() < 0.1 else np.float32
        a = a.astype(dtype)
        if rng.random() < 0.2 and a.ndim >= 2:
            a = np.swapaxes(a, 0, -1)  # non-contiguous view
        return a

    def random_outputs(size, strides):
        bad = rng.random() < 0.5  # half well-formed (odd values only), half malformed
        kind = rng.choice(4, p=[0.45, 0.45, 0.07, 0.03])
        grids = [(-(-size[0] // s), -(-size[1] // s)) if s > 0 and min(size) > 0 else (0, 0) for s in strides]
        grids = [(min(h, 80), min(w, 80)) for h, w in grids]
        classes = int(rng.integers(1, 6))
        if kind == 0:  # official rows
            n = sum(h * w for h, w in grids)
            n = max(0, n + int(rng.choice([-1, 1, -n, 3]))) if bad else n
            shape = (n, 5 + classes if not bad or rng.random() < 0.5 else int(rng.integers(0, 6)))
            if rng.random() < 0.3:
                shape = (int(rng.integers(0 if bad else 1, 3)),) + shape
            return random_array(shape)
        if kind == 1:  # split maps
            nhwc, batch = rng.random() < 0.3, int(rng.integers(1, 3)) if rng.random() < 0.3 else None
            maps = []
            for h, w in grids:
                for c in (4, 1, classes):
                    if bad and rng.random() < 0.1:
                        h, c = h + 1, c + int(rng.integers(0, 2))
                    shape = (h, w, c) if nhwc != (bad and rng.random() < 0.1) else (c, h, w)
                    maps.append(random_array(shape if batch is None else (batch,) + shape))
            if bad and rng.random() < 0.2:
                maps = maps[: int(rng.integers(0, len(maps) + 1))]
            return maps
        if kind == 2:  # arbitrary ranks and shapes
            return random_array(tuple(int(d) for d in rng.integers(0, 8, rng.integers(0, 5))))
        return rng.choice([None, "rows", 3.5, [None], [[1, 2], [3]]], 1)[0]

    def pick(good, bad):
        # Mostly valid arguments, so that malformed outputs are what gets tested; sometimes a bad one.
        options = bad if rng.random() < 0.04 else good
        return options[int(rng.integers(len(options)))]

    calls = errors = 0
    for i in range(int(sys.argv[2])):
        size = tuple(int(v) for v in rng.choice([0, -32, 1, 7, 32, 64, 96, 2**31 - 1], 2))
        if rng.random() < 0.9:
            size = (32 * int(rng.integers(1, 4)), 32 * int(rng.integers(1, 4)))
        strides = (8, 16, 32) if rng.random() < 0.9 else tuple(int(s) for s in rng.integers(-2, 40, rng.integers(0, 4)))
        kwargs = dict(
            conf=pick([0.0, 0.01, 0.25, 1.0], [np.nan, -1.0]),
            iou=pick([0.0, 0.45, 1.0], [np.nan, 2.0]),
            class_agnostic=bool(rng.random() < 0.5),
            multi_label=bool(rng.random() < 0.3),
            apply_sigmoid=bool(rng.random() < 0.5),
            decode_boxes=bool(rng.random() < 0.8),
            max_det=pick([0, 1, 300], [-5]),
            ratio=pick([1.0, 0.3, 2.5], [0.0, -1.0, np.inf, np.nan]),
            frame_size=pick([None, (480, 640), (0, 0)], [(-5, 10)]),
            strides=strides,
            layout=pick(["auto", "auto", "nchw", "nhwc"], ["bad"]),
        )
        try:
            results = edge_yolox.postprocess_batch(random_outputs(size, strides), size, **kwargs)
        except (TypeError, ValueError, OverflowError):
            errors += 1
            continue
        calls += 1
        for r in results:
            assert r.dtype == np.float32 and r.ndim == 2 and r.shape[1] == 6, r.shape
            assert not np.isnan(r).any(), "NaN in a result"
    print(f"calls={calls} errors={errors}")
    """
)


def test_fuzz_never_crashes(tmp_path):
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ)
    total = {"calls": 0, "errors": 0}
    for seed in range(4):  # separate processes, so a crash names its seed
        proc = subprocess.run([sys.executable, str(script), str(seed), "2600"], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"seed {seed}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
        for part in proc.stdout.split():
            key, value = part.split("=")
            total[key] += int(value)
    assert total["calls"] + total["errors"] >= 10_000
    # Both paths must be exercised: valid calls that return, and malformed ones that raise.
    assert total["calls"] > 2000 and total["errors"] > 2000, total
