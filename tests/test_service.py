"""The systemd service: the rendered unit passes `systemd-analyze verify` and scores <= 3.0 in
`systemd-analyze security`; secrets never land in the unit or config; install/uninstall into an OS image
root; the unit's own ExecStart, run as systemd would (NOTIFY_SOCKET, WATCHDOG_USEC, CREDENTIALS_DIRECTORY),
speaks sd_notify on a real datagram socket and publishes to a real broker; sd_notify itself."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mqtt_helpers import PASSWORD, Broker, Subscriber
from runtime_helpers import ROOT, cli, onnx_model

from edge_yolox.errors import ConfigError
from edge_yolox.service import Notifier, render


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        message = "systemd-analyze not installed (apt-get install systemd): needed to check the unit"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_args(password_file: Path, *extra: str) -> list[str]:
    return ["--", "--source", "synthetic", "--model", str(onnx_model()), "--threads", "1", "--device-id", "svc",
            "--mqtt", "mqtt://edge@127.0.0.1:1883/home", "--mqtt-password-file", str(password_file), *extra]


@pytest.fixture()
def secret(tmp_path) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text(PASSWORD + "\n")
    return path


def test_rendered_unit_verifies_and_is_hardened(tmp_path, secret):
    analyze = systemd_analyze()
    rendered = render("edge-yolox", "edge-yolox", run_args(secret))
    unit = tmp_path / "edge-yolox.service"
    unit.write_text(rendered.unit)
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert "edge-yolox.service" not in verify.stderr  # no warning about our unit (others' may appear)
    security = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    exposure = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout).group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= 3.0
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "StartLimitBurst=5", "User=edge-yolox",
                 "SupplementaryGroups=video dialout", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "ProtectHome=yes", "StateDirectory=edge-yolox", "After=network-online.target",
                 f"LoadCredential=mqtt-password:{secret}"):
        assert line in rendered.unit.splitlines()


def test_secrets_stay_out_of_unit_and_config(secret):
    rendered = render("cam", "edge-yolox", run_args(secret))
    for text in (rendered.unit, rendered.config):
        assert PASSWORD not in text
    assert "password_file: ${CREDENTIALS_DIRECTORY}/mqtt-password" in rendered.config
    assert "spill: ${STATE_DIRECTORY}/mqtt-spill.jsonl" in rendered.config  # the spill queue in StateDirectory=
    assert "--config /etc/cam/config.yaml" in rendered.unit


def test_bad_arguments_fail_the_install_not_the_boot(secret):
    with pytest.raises(ConfigError, match="detect.conf"):
        render("edge-yolox", "edge-yolox", run_args(secret, "--conf", "2"))
    with pytest.raises(ConfigError, match="--user"):
        render("edge-yolox", "root", run_args(secret))
    with pytest.raises(ConfigError, match="--name"):
        render("../evil", "edge-yolox", run_args(secret))
    proc = cli("service", "install", "--dry-run", "--", "--board", "nope", "--source", "synthetic")
    assert proc.returncode == 2 and proc.stderr.startswith("edge-yolox: error: ") and "Traceback" not in proc.stderr


def test_dry_run_prints_and_changes_nothing(secret, tmp_path):
    proc = cli("service", "install", "--dry-run", "--root", str(tmp_path / "img"), *run_args(secret))
    assert proc.returncode == 0, proc.stderr
    assert "[Service]" in proc.stdout and "# ---- " in proc.stdout and "would run: systemctl" in proc.stdout
    assert not (tmp_path / "img").exists()


def test_install_and_uninstall_into_an_image_root(secret, tmp_path):
    image = tmp_path / "img"
    proc = cli("service", "install", "--name", "cam", "--root", str(image), *run_args(secret))
    assert proc.returncode == 0, proc.stderr
    unit = image / "etc/systemd/system/cam.service"
    assert unit.is_file() and (image / "etc/cam/config.yaml").is_file()
    if shutil.which("systemctl"):  # `systemctl --root` enables offline: the wants/ link of multi-user.target
        assert (image / "etc/systemd/system/multi-user.target.wants/cam.service").is_symlink()
    proc = cli("service", "uninstall", "--name", "cam", "--root", str(image))
    assert proc.returncode == 0, proc.stderr
    assert not unit.exists() and not (image / "etc/cam").exists()
    assert not (image / "etc/systemd/system/multi-user.target.wants/cam.service").exists()


def notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(60)
    return sock


def test_the_units_exec_start_runs_like_systemd_runs_it(tmp_path):
    """ExecStart from the rendered unit, with the config at the unit's path (inside an image root) and the
    environment systemd gives a Type=notify service with a watchdog and a credential."""
    broker = Broker(tmp_path / "broker").start()
    subscriber = Subscriber(broker)
    try:
        image = tmp_path / "img"
        args = run_args(broker.password_file, "--limit", "15")
        args[args.index("mqtt://edge@127.0.0.1:1883/home")] = broker.url("home")
        proc = cli("service", "install", "--root", str(image), *args)
        assert proc.returncode == 0, proc.stderr
        unit = (image / "etc/systemd/system/edge-yolox.service").read_text()
        exec_start = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
        config = exec_start[exec_start.index("--config") + 1]
        exec_start[exec_start.index(config)] = str(image / config.lstrip("/"))
        credentials = tmp_path / "credentials"  # what LoadCredential= provides
        credentials.mkdir()
        source = re.search(r"^LoadCredential=mqtt-password:(.*)$", unit, re.M).group(1)
        shutil.copy(source, credentials / "mqtt-password")
        sock = notify_socket(tmp_path / "notify")
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000",
               "CREDENTIALS_DIRECTORY": str(credentials), "STATE_DIRECTORY": str(tmp_path)}
        run = subprocess.Popen(exec_start, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        try:
            out, err = run.communicate(timeout=120)
        finally:
            run.kill()
        sock.setblocking(False)
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(sock.recv(4096).decode())
        assert run.returncode == 0, err[-2000:]
        assert out == ""  # stdout JSON lines are off in the service: the journal stays quiet
        assert "READY=1" in messages and "WATCHDOG=1" in messages
        assert messages.index("READY=1") < messages.index("STOPPING=1")
        assert any(m.startswith("STATUS=") and "fps" in m for m in messages)
        assert subscriber.wait_for(lambda m: len(subscriber.records()) >= 15)
        assert [r["frame"] for r in subscriber.records()] == list(range(15))
    finally:
        subscriber.close()
        broker.kill()


def test_notifier_speaks_the_datagram_protocol(tmp_path, monkeypatch):
    sock = notify_socket(tmp_path / "n.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_env()
    assert notifier.enabled and notifier.watchdog_interval == 0.5
    notifier.ready()
    notifier.status("12.5 fps")
    notifier.watchdog()
    notifier.watchdog()  # within half the period: not sent again
    notifier.stopping()
    notifier.close()
    assert [sock.recv(100).decode() for _ in range(4)] == ["READY=1", "STATUS=12.5 fps", "WATCHDOG=1", "STOPPING=1"]

    monkeypatch.setenv("WATCHDOG_PID", "1")  # the watchdog belongs to another process: never ping
    assert Notifier.from_env().watchdog_interval is None


def test_notifier_abstract_socket_and_no_systemd(monkeypatch):
    name = f"edge-yolox-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(10)
    Notifier("@" + name).ready()
    assert sock.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    quiet = Notifier.from_env()
    quiet.ready()  # no systemd: a no-op, never an error
    assert not quiet.enabled


def test_status_without_systemd_is_a_clear_error():
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: status would query the real service")
    proc = subprocess.run([sys.executable, "-m", "edge_yolox.cli", "service", "status"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "systemd is not running" in proc.stderr
