"""Board health: CPU temperature and throttling. Everything optional and never fatal."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

THERMAL_ZONES = Path("/sys/class/thermal")


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


def read() -> dict[str, Any]:
    """Everything we can read cheaply, for the periodic stats; keys are absent when unknown."""
    out: dict[str, Any] = {}
    temp = cpu_temperature()
    if temp is not None:
        out["cpu_temp_c"] = round(temp, 1)
    return out
