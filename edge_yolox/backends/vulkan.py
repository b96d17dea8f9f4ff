"""The Vulkan devices ncnn can run on, with their fp16/int8 support (for the ncnn backend and `doctor`).

ncnn's Python binding does not expose GpuInfo's support_fp16_* / support_int8_* queries, but ncnn prints them
for every device when it creates its Vulkan instance ("[0 name]  fp16-p/s/u/a=1/1/1/1  int8-p/s/u/a=1/1/1/1":
packed, storage, uniform, arithmetic). We create the instance once, capture that listing and parse it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from edge_yolox.backends.ncnn_param import c_stderr

CAPABILITIES = re.compile(r"\[(\d+) [^\]]*\]\s+fp16-p/s/u/a=(\d)/(\d)/\d/(\d)\s+int8-p/s/u/a=(\d)/(\d)/\d/(\d)")


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    fp16_packed: bool = False  # unknown capabilities read as unsupported: fp32 is always correct
    fp16_storage: bool = False
    fp16_arithmetic: bool = False
    int8_packed: bool = False
    int8_storage: bool = False
    int8_arithmetic: bool = False

    def summary(self) -> str:
        fp16 = "storage+arithmetic" if self.fp16_arithmetic else "storage" if self.fp16_storage else "no"
        int8 = "storage+arithmetic" if self.int8_arithmetic else "storage" if self.int8_storage else "no"
        return f"{self.index}: {self.name} (fp16 {fp16}, int8 {int8})"


@functools.lru_cache(maxsize=1)
def devices(ncnn) -> tuple[Device, ...]:
    """The devices `ncnn` (the imported module) finds; the first call creates ncnn's Vulkan instance."""
    with c_stderr() as said:  # also keeps the loader's own noise ("vkCreateInstance failed") off the terminal
        ncnn.create_gpu_instance()
        count = ncnn.get_gpu_count()
    flags = {int(m[1]): [c == "1" for c in m.groups()[1:]] for m in CAPABILITIES.finditer(said())}
    return tuple(Device(i, ncnn.get_gpu_info(i).device_name(), *flags.get(i, ())) for i in range(count))
