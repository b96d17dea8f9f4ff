"""Board health readers on board-shaped files and tools: thermal zones, the Pi firmware's throttling word
(sysfs, a `vcgencmd` on PATH, the rpi_volt hwmon alarm) and jetson-stats; all optional, never fatal."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from edge_yolox import telemetry


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cpu_temperature_takes_the_hottest_cpu_zone(tmp_path):
    for i, (kind, milli) in enumerate((("cpu-thermal", "51234"), ("gpu-thermal", "70000"), ("soc_thermal", "55500"),
                                       ("x86_pkg_temp", "broken"))):
        write(tmp_path / f"thermal_zone{i}" / "type", kind + "\n")
        write(tmp_path / f"thermal_zone{i}" / "temp", milli + "\n")
    assert telemetry.cpu_temperature(tmp_path) == 55.5
    assert telemetry.cpu_temperature(tmp_path / "none") is None


@pytest.fixture()
def tool_dir(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    tool = bin_dir / name
    tool.write_text("#!/bin/sh\n" + script + "\n")
    tool.chmod(0o755)


def test_throttled_from_vcgencmd_before_the_deprecated_sysfs_file(tmp_path, tool_dir):
    write(tmp_path / "get_throttled", "50005\n")  # under-voltage and throttled now, and since the last poll
    fake_tool(tool_dir, "vcgencmd", 'echo "throttled=0x80008"')  # soft temperature limit now, and since boot
    flags = telemetry.rpi_throttled(tmp_path / "get_throttled", tmp_path)
    assert {k for k, v in flags.items() if v} == {"soft_temp_limit", "soft_temp_limit_occurred"}
    fake_tool(tool_dir, "vcgencmd", 'echo "VCHI initialization failed" >&2; exit 1')  # no /dev/vchiq access
    flags = telemetry.rpi_throttled(tmp_path / "get_throttled", tmp_path)
    assert {k for k, v in flags.items() if v} == {"under_voltage", "throttled", "under_voltage_occurred",
                                                  "throttled_occurred"}
    assert telemetry.rpi_throttled(tmp_path / "absent", tmp_path) is None  # a Pi 5 without vcgencmd access


def test_under_voltage_from_rpi_volt_hwmon(tmp_path, tool_dir):
    write(tmp_path / "hwmon0" / "name", "cpu_thermal\n")
    write(tmp_path / "hwmon1" / "name", "rpi_volt\n")
    write(tmp_path / "hwmon1" / "in0_lcrit_alarm", "1\n")
    assert telemetry.rpi_throttled(tmp_path / "absent", tmp_path) == {"under_voltage": True}


# A stand-in for jetson-stats' client (rbonghi/jetson_stats, jtop/jtop.py): start() raises JtopException when
# jtop.service is not running; once the service went away, ok() raises the error the reader thread stored (spin=True:
# without waiting for the next sample) while `stats` keeps the last values it received.
JTOP = """
import json, pathlib

SERVICE = pathlib.Path(__file__).with_name("service.json")  # the test's jtop.service: {"up", "boot", "temp"}


class JtopException(Exception):
    pass


class jtop:
    def start(self):
        service = json.loads(SERVICE.read_text())
        if not service["up"]:
            raise JtopException("The jtop.service is not active. Please run:\\nsudo jtop --install-service")
        self.boot, self.last = service["boot"], service

    def ok(self, spin=False):
        service = json.loads(SERVICE.read_text())
        if service["boot"] != self.boot or not service["up"]:
            raise JtopException("Lost connection with jtop server")
        self.last = service
        return True

    def close(self):
        pass

    @property
    def stats(self):
        return {"time": 0, "Temp CPU": self.last["temp"], "Temp GPU": 46.0, "Temp PMIC": -256, "Power TOT": 5321,
                "nvp model": "15W", "RAM": 0.4}
"""


def test_jetson_stats_follow_a_restarted_jtop_service(tmp_path, monkeypatch, caplog):
    write(tmp_path / "jtop" / "__init__.py", JTOP)
    service = tmp_path / "jtop" / "service.json"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "jtop", raising=False)
    caplog.set_level(logging.INFO, "edge_yolox.telemetry")
    jetson = telemetry.Jetson()

    def state(up: bool, boot: int, temp: float) -> dict:
        service.write_text(json.dumps({"up": up, "boot": boot, "temp": temp}))
        return jetson.read()

    assert state(False, 0, 0.0) == {}  # the service is not running yet
    assert "jtop.service is not active" in caplog.text
    assert state(True, 1, 48.5) == {"temp_c": {"cpu": 48.5, "gpu": 46.0}, "power_w": 5.32, "nvpmodel": "15W"}
    assert state(True, 1, 49.0)["temp_c"]["cpu"] == 49.0  # the same connection, new values
    assert state(False, 1, 49.0) == {}  # jtop.service stopped: nothing rather than the last values
    assert state(True, 2, 51.0)["temp_c"]["cpu"] == 51.0  # restarted: connected again
    sys.modules.pop("jtop", None)


def test_no_jetson_stats_is_quietly_off(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)  # `import jtop` raises ImportError
    jetson = telemetry.Jetson()
    assert jetson.read() == {} and not jetson.installed


def test_read_never_fails_here():
    stats = telemetry.read()
    assert set(stats) <= {"cpu_temp_c", "throttled", "jetson"}
