"""Raspberry Pi CSI cameras through picamera2 (imported only when used: it exists only on Pi OS)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge_yolox.errors import SourceError


class Picamera2Reader:
    """One Picamera2 instance, created and started once (re-created only when the camera fails)."""

    def __init__(self, index: int, width: int, height: int, fps: float):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError("picamera2 is not installed: on Raspberry Pi OS run `sudo apt install "
                              "python3-picamera2` and create the venv with --system-site-packages") from None
        self.name = f"picamera2:{index}"
        self.fps: Optional[float] = fps
        try:
            self.camera = Picamera2(index)
            # libcamera's "RGB888" is stored B, G, R in memory: exactly OpenCV's BGR, no conversion needed.
            config = self.camera.create_video_configuration(
                main={"size": (width, height), "format": "RGB888"},
                controls={"FrameRate": float(fps)},
                buffer_count=2,  # few buffers: we always want the newest frame, not a queue
            )
            self.camera.configure(config)
            self.camera.start()
        except (IndexError, RuntimeError, ValueError) as exc:
            raise SourceError(f"{self.name}: cannot start the camera ({exc}); is it connected and enabled?") from None

    def grab(self) -> Optional[np.ndarray]:
        image = self.camera.capture_array("main")
        return image[..., :3] if image.ndim == 3 and image.shape[2] == 4 else image

    def close(self) -> None:
        try:
            self.camera.stop()
        finally:
            self.camera.close()
