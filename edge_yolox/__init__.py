"""edge-yolox: YOLOX from training to Raspberry Pi and Jetson.

The runtime package: numpy, OpenCV and the C++ core only. Never imports torch (that lives in
`edge_yolox.train`, installed with the [train] extra).
"""

__version__ = "0.1.0"

from edge_yolox.postprocess import postprocess, postprocess_batch

__all__ = ["__version__", "letterbox", "postprocess", "postprocess_batch"]


def __getattr__(name: str):
    """`letterbox` on first use: it needs OpenCV, which the C++ postprocess and `edge-yolox`'s one-line error about
    a missing cv2 do not."""
    if name == "letterbox":
        from edge_yolox.preprocess import letterbox

        return letterbox
    raise AttributeError(f"module 'edge_yolox' has no attribute {name!r}")
