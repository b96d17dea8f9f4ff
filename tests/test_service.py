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
import threading
import time
from pathlib import Path

import pytest
from conftest import system_tool
from mqtt_helpers import PASSWORD, Broker, Subscriber
from runtime_helpers import ROOT, cli, onnx_model

from edge_yolox.errors import ConfigError
from edge_yolox.notify import Notifier
from edge_yolox.service import _existing_groups, render


def systemd_analyze() -> str:
    return system_tool("systemd-analyze", package="systemd", needed_for="to check the unit")


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
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "StartLimitIntervalSec=0", "User=edge-yolox",
                 "SupplementaryGroups=video dialout", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "ProtectHome=yes", "StateDirectory=edge-yolox", "After=network-online.target",
                 f"LoadCredential=mqtt-password:{secret}"):
        assert line in rendered.unit.splitlines()


def exposure(analyze: str, unit: Path) -> float:
    security = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    return float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout).group(1))


def test_jetson_csi_unit_binds_the_argus_socket(tmp_path):
    """An nvargus board's unit binds nvargus-daemon's /tmp/argus_socket into its private /tmp and starts after the
    daemon; it verifies and is exposed no more than another board's unit, which names no socket."""
    analyze = systemd_analyze()
    units = {}
    for board in ("jetson-orin-nano", "rpi4"):
        rendered = render("cam", "edge-yolox", ["--", "--board", board, "--camera", "0", "--model", str(onnx_model())])
        units[board] = tmp_path / board / "cam.service"
        units[board].parent.mkdir()
        units[board].write_text(rendered.unit)
    jetson = units["jetson-orin-nano"].read_text().splitlines()
    for line in ("BindPaths=/tmp/argus_socket", "After=nvargus-daemon.service", "PrivateTmp=yes"):
        assert line in jetson
    assert "argus" not in units["rpi4"].read_text()
    verify = subprocess.run([analyze, "verify", str(units["jetson-orin-nano"])], capture_output=True, text=True)
    assert verify.returncode == 0 and "cam.service" not in verify.stderr, verify.stderr
    assert exposure(analyze, units["jetson-orin-nano"]) == exposure(analyze, units["rpi4"]) <= 3.0


def test_argus_socket_is_reachable_in_the_units_mount_namespace(tmp_path):
    """No systemd runs here, so unshare(1) replays the unit's mount steps: PrivateTmp= (a new /tmp), then each
    BindPaths= of the rendered unit; a client inside connects to a socket listening at /tmp/argus_socket outside.
    Without the BindPaths= line the socket is hidden (the bug this fixes)."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs root and unshare(1) to make a mount namespace")
    unit = render("cam", "edge-yolox", ["--", "--board", "jetson-nano", "--camera", "0", "--model", str(onnx_model())])
    binds = re.findall(r"^BindPaths=(\S+)$", unit.unit, re.M)
    assert binds == ["/tmp/argus_socket"]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(binds[0])
    server.bind(binds[0])
    server.listen()
    threading.Thread(target=lambda: server.accept()[0].sendall(b"argus"), daemon=True).start()
    client = (f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({binds[0]!r}); "
              f"print(s.recv(5).decode())")

    def in_namespace(bind_paths: list[str]) -> subprocess.CompletedProcess:
        # /mnt keeps the host's /tmp reachable inside, as systemd keeps the host's root while it sets up mounts.
        steps = ["mount --bind /tmp /mnt", "mount -t tmpfs tmpfs /tmp"]
        steps += [f"touch {path} && mount --bind /mnt/{Path(path).name} {path}" for path in bind_paths]
        steps.append(f"{shlex.quote(sys.executable)} -c {shlex.quote(client)}")
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-ec", " && ".join(steps)],
                              capture_output=True, text=True, timeout=60)

    try:
        hidden = in_namespace([])
        reached = in_namespace(binds)
    finally:
        server.close()
        os.unlink(binds[0])
    assert hidden.returncode != 0 and "No such file or directory" in hidden.stderr
    assert reached.returncode == 0 and reached.stdout.strip() == "argus", reached.stderr


def test_jtop_group_where_jetson_stats_is_installed(secret, tmp_path):
    """jetson-stats' /run/jtop.sock is root:jtop 0660: an image whose /etc/group has jtop gets it in the unit."""
    image = tmp_path / "img"
    (image / "etc").mkdir(parents=True)
    (image / "etc" / "group").write_text("root:x:0:\nvideo:x:44:\ndialout:x:20:\njtop:x:998:\n")
    proc = cli("service", "install", "--name", "cam", "--root", str(image), *run_args(secret))
    assert proc.returncode == 0, proc.stderr
    assert "SupplementaryGroups=video dialout jtop" in (image / "etc/systemd/system/cam.service").read_text()
    (image / "etc" / "group").write_text("root:x:0:\nvideo:x:44:\n")
    assert _existing_groups(str(image)) == ("video",)


def test_a_python_under_home_is_noted(secret):
    rendered = render("cam", "edge-yolox", run_args(secret), python="/home/pi/edge-yolox/bin/python")
    assert any(n.startswith("ProtectHome= hides this Python (/home/pi/edge-yolox/bin/python)") and "/opt" in n
               for n in rendered.notes)
    elsewhere = render("cam", "edge-yolox", run_args(secret), python="/opt/edge-yolox/bin/python")
    assert not any("this Python" in n for n in elsewhere.notes)


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


class NotifyListener:
    """A notify socket read as systemd reads it, while the service runs: (arrival time, message) pairs."""

    def __init__(self, path: Path):
        self.sock = notify_socket(path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(socket.timeout):
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))

    def close(self) -> list[tuple[float, str]]:
        self._done.set()
        self._thread.join()
        self.sock.close()
        return self.messages


def test_watchdog_is_fed_only_while_frames_arrive(tmp_path):
    """`edge-yolox run` on a Pi CSI camera (the picamera2 stand-in, tests/standins) that delivers 20 frames, then none
    for 4 s: WATCHDOG=1 stops once no frame came for source.timeout_s (so systemd restarts a camera that stays silent
    for WatchdogSec), the source reopens the camera meanwhile, and the pings resume with the frames."""
    config = tmp_path / "camera.yaml"
    config.write_text("source: {timeout_s: 1.0, reconnect_min_s: 0.2, reconnect_max_s: 0.5}\n"
                      "camera: {width: 320, height: 240}\n")
    listener = NotifyListener(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "500000",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "standins"), os.environ.get("PYTHONPATH", "")]),
           "PICAMERA2_STANDIN_STALL_AFTER": "20", "PICAMERA2_STANDIN_STALL_S": "4"}
    try:
        result = cli("-q", "run", "--board", "rpi4", "--config", config, "--source", "picamera2", "--model",
                     onnx_model(), "--threads", "1", "--limit", "40", "--no-stdout", env=env)
    finally:
        messages = listener.close()
    assert result.returncode == 0, result.stderr[-2000:]
    pings = [t for t, m in messages if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    longest = gaps.index(max(gaps))
    assert max(gaps) >= 2.5, gaps  # 4 s without frames, minus the 1 s before the source counts as stalled
    assert len(gaps[longest + 1:]) >= 2  # fed again once the reopened camera delivers
    assert sorted(gaps)[-2] < 1.0  # every other ping on time (every 0.25 s)
    assert "the systemd watchdog is no longer fed" in result.stderr and "no frame for 1 s" in result.stderr
    assert [m for _, m in messages if m in ("READY=1", "STOPPING=1")] == ["READY=1", "STOPPING=1"]


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
