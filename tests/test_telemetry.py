"""Board health readers on board-shaped files and tools: thermal zones, the Pi firmware's throttling word
(sysfs, a `vcgencmd` on PATH, the rpi_volt hwmon alarm) and jetson-stats; all optional, never fatal."""

from __future__ import annotations

import sys
import textwrap
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


def test_throttled_word_from_sysfs(tmp_path):
    write(tmp_path / "get_throttled", "50005\n")  # under-voltage and throttled now, and since boot
    flags = telemetry.rpi_throttled(tmp_path / "get_throttled", tmp_path)
    assert {k for k, v in flags.items() if v} == {"under_voltage", "throttled", "under_voltage_occurred",
                                                  "throttled_occurred"}


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


def test_throttled_from_vcgencmd_when_sysfs_is_absent(tmp_path, tool_dir):
    fake_tool(tool_dir, "vcgencmd", 'echo "throttled=0x80008"')
    flags = telemetry.rpi_throttled(tmp_path / "absent", tmp_path)
    assert flags["soft_temp_limit"] and flags["soft_temp_limit_occurred"] and not flags["under_voltage"]
    fake_tool(tool_dir, "vcgencmd", 'echo "VCHI initialization failed" >&2; exit 1')  # no /dev/vchiq access
    assert telemetry.rpi_throttled(tmp_path / "absent", tmp_path) is None


def test_under_voltage_from_rpi_volt_hwmon(tmp_path, tool_dir):
    write(tmp_path / "hwmon0" / "name", "cpu_thermal\n")
    write(tmp_path / "hwmon1" / "name", "rpi_volt\n")
    write(tmp_path / "hwmon1" / "in0_lcrit_alarm", "1\n")
    assert telemetry.rpi_throttled(tmp_path / "absent", tmp_path) == {"under_voltage": True}


JTOP = """
class jtop:
    def start(self):
        if {fail}:
            raise RuntimeError("The jtop.service is not active")
    @property
    def stats(self):
        return {{"time": 0, "Temp CPU": 48.5, "Temp GPU": 46.0, "Temp PMIC": -256, "Power TOT": 5321,
                "nvp model": "15W", "RAM": 0.4}}
"""


@pytest.mark.parametrize("fail", [False, True])
def test_jetson_stats_when_installed(tmp_path, monkeypatch, fail):
    write(tmp_path / "jtop" / "__init__.py", textwrap.dedent(JTOP.format(fail=fail)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "jtop", raising=False)
    jetson = telemetry.Jetson()
    expected = {} if fail else {"temp_c": {"cpu": 48.5, "gpu": 46.0}, "power_w": 5.32, "nvpmodel": "15W"}
    assert jetson.read() == expected
    assert jetson.read() == expected  # connected once, read again (or stays off after the failure)


def test_read_never_fails_here():
    stats = telemetry.read()
    assert set(stats) <= {"cpu_temp_c", "throttled", "jetson"}
