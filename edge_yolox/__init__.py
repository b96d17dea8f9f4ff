"""edge-yolox: YOLOX from training to Raspberry Pi and Jetson.

The runtime package: numpy, OpenCV and the C++ core only. Never imports torch (that lives in
`edge_yolox.train`, installed with the [train] extra).
"""

__version__ = "0.1.0"

from edge_yolox.postprocess import postprocess, postprocess_batch
from edge_yolox.preprocess import letterbox

__all__ = ["__version__", "letterbox", "postprocess", "postprocess_batch"]
