"""Board health: CPU temperature, Raspberry Pi throttling, Jetson temperatures and power (jetson-stats).

Everything optional and never fatal: a source that is missing or fails is left out of the stats.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

THERMAL_ZONES = Path("/sys/class/thermal")
# Deprecated and absent on Pi 5: read only without vcgencmd.
RPI_THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
HWMON = Path("/sys/class/hwmon")
# Bits of the Pi firmware's get_throttled word: <name> is "active now"; bit + 16, <name>_occurred, is the sticky
# "has occurred since boot" as `vcgencmd get_throttled` reports it. Read from sysfs instead, it only means "since
# the kernel's last poll": the rpi hwmon driver asks the firmware to clear those bits every 2 s.
THROTTLE_BITS = {0: "under_voltage", 1: "freq_capped", 2: "throttled", 3: "soft_temp_limit"}
log = logging.getLogger(__name__)


def cpu_temperature(root: Path = THERMAL_ZONES) -> Optional[float]:
    """The hottest CPU-like thermal zone in °C, or None when the board exposes none."""
    temps = []
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip().lower()
            millideg = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        if any(tag in kind for tag in ("cpu", "soc", "x86_pkg", "acpitz")) or kind.startswith("bcm2"):
            temps.append(millideg / 1000.0)
    return max(temps) if temps else None


def parse_throttled(word: int) -> dict[str, bool]:
    flags = {name: bool(word >> bit & 1) for bit, name in THROTTLE_BITS.items()}
    flags.update({f"{name}_occurred": bool(word >> (bit + 16) & 1) for bit, name in THROTTLE_BITS.items()})
    return flags


def rpi_throttled(sysfs: Path = RPI_THROTTLED, hwmon: Path = HWMON) -> Optional[dict[str, bool]]:
    """Pi under-voltage/throttling: `vcgencmd get_throttled`, else the deprecated sysfs word, else the rpi_volt
    hwmon alarm (under-voltage only); None on boards that have none of them."""
    vcgencmd = shutil.which("vcgencmd")
    if vcgencmd:
        try:
            out = subprocess.run([vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=2).stdout
            return parse_throttled(int(out.strip().split("=", 1)[1], 16))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            log.debug("vcgencmd get_throttled gave no usable answer")
    try:
        return parse_throttled(int(sysfs.read_text().strip(), 16))
    except (OSError, ValueError):
        pass
    for sensor in sorted(hwmon.glob("hwmon*")):
        try:
            if (sensor / "name").read_text().strip() == "rpi_volt":
                return {"under_voltage": (sensor / "in0_lcrit_alarm").read_text().strip() == "1"}
        except OSError:
            continue
    return None


class Jetson:
    """Temperatures and power from jetson-stats (`jtop`). The connection is kept between reads and checked with
    jtop.ok(), which raises once jtop.service went away (restarted, upgraded): then it is reconnected, instead of
    serving the last values forever. Off for good only when jetson-stats is not installed."""

    def __init__(self):
        self.jtop: Any = None
        self.installed = True
        self.error = ""  # the last failure, logged when it changes

    def read(self) -> dict[str, Any]:
        if not self.installed:
            return {}
        try:
            stats = self._stats()
        except ImportError:  # not a Jetson, or jetson-stats not in this venv
            self.installed = False
            return {}
        except Exception as exc:  # JtopException: jtop.service down, restarted, or not accessible
            self._disconnect(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return {}
        if self.error:
            log.info("jetson-stats connected again")
            self.error = ""
        return jetson_stats(stats)

    def _stats(self) -> dict[str, Any]:
        if self.jtop is None:
            from jtop import jtop  # jetson-stats: optional

            connection = jtop()
            connection.start()
            self.jtop = connection
        elif not self.jtop.ok(spin=True):  # spin: do not wait for the next sample; raises the reader's error
            raise RuntimeError("the jtop connection stopped")
        return dict(self.jtop.stats)

    def _disconnect(self, error: str) -> None:
        if error != self.error:
            log.info("jetson-stats unavailable (%s); no Jetson power/temperatures in stats until it is back", error)
            self.error = error
        old, self.jtop = self.jtop, None
        if old is not None:
            with contextlib.suppress(Exception):  # the connection is gone already: nothing left to release
                old.close()


def jetson_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Our stats from jtop's: temperatures (°C), total power (W), the nvpmodel."""
    temps = {k[5:].lower(): float(v) for k, v in stats.items()
             if k.startswith("Temp ") and isinstance(v, (int, float)) and v > -200}  # jtop: -256 = offline
    out: dict[str, Any] = {"temp_c": temps} if temps else {}
    if isinstance(stats.get("Power TOT"), (int, float)):
        out["power_w"] = round(stats["Power TOT"] / 1000.0, 2)  # jtop reports mW
    if "nvp model" in stats:
        out["nvpmodel"] = str(stats["nvp model"])
    return out


_jetson = Jetson()


def read() -> dict[str, Any]:
    """Everything we can read cheaply, for the periodic stats; keys are absent when unknown."""
    out: dict[str, Any] = {}
    temp = cpu_temperature()
    if temp is not None:
        out["cpu_temp_c"] = round(temp, 1)
    throttled = rpi_throttled()
    if throttled is not None:
        out["throttled"] = throttled
    jetson = _jetson.read()
    if jetson:
        out["jetson"] = jetson
    return out
