"""A real mosquitto broker for the MQTT tests and bench: password auth on a plain listener, and a TLS
listener (CA, server and client certificates made here with the openssl CLI) that also wants a client
certificate. Persistence is on, so a subscriber's session survives the broker being killed. `runtime()` starts
`edge-yolox run` publishing to it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from conftest import free_port, system_tool, until

USER, PASSWORD = "edge", "pw-not-in-argv-7c1"
ROOT = Path(__file__).resolve().parents[1]


def _need(tool: str, package: str) -> str:
    return system_tool(tool, package=package, needed_for="for the MQTT tests")


def make_certs(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA."""
    openssl = _need("openssl", "openssl")
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=edge-yolox test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (folder / f"{name}.ext").write_text(ext + "\n")
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return {name: folder / name for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


class Broker:
    def __init__(self, folder: Path):
        self.mosquitto = _need("mosquitto", "mosquitto")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port = free_port(), free_port()
        self.certs = make_certs(folder / "certs")
        passwords = folder / "passwords"
        subprocess.run([_need("mosquitto_passwd", "mosquitto"), "-c", "-b", str(passwords), USER, PASSWORD],
                       check=True, capture_output=True)
        self.password_file = folder / "mqtt-password"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join([
            "user root",  # started as root in CI containers: keep reading the files made here
            "per_listener_settings false", "allow_anonymous false", f"password_file {passwords}",
            "persistence true", f"persistence_location {folder}/", "autosave_interval 1",
            f"log_dest file {folder / 'mosquitto.log'}", "log_type all",
            f"listener {self.port} 127.0.0.1",
            f"listener {self.tls_port} 127.0.0.1", f"cafile {self.certs['ca.crt']}",
            f"certfile {self.certs['server.crt']}", f"keyfile {self.certs['server.key']}", "require_certificate true",
        ]) + "\n")
        self.proc: Optional[subprocess.Popen] = None

    def url(self, prefix: str = "test", tls: bool = False) -> str:
        return f"{'mqtts' if tls else 'mqtt'}://{USER}@127.0.0.1:{self.tls_port if tls else self.port}/{prefix}"

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.mosquitto, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start; log: {self.log()}")

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, like a crash or a power cut."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def saved_after(self, when: float) -> bool:
        """Whether mosquitto wrote its persistence file after `when` (time.time()). Its autosave_interval of 1 s
        was measured saving every 2 s, so a fixed wait missed it: the subscription was gone after a kill."""
        db = self.folder / "mosquitto.db"
        return db.exists() and db.stat().st_mtime > when

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text()[-3000:] if path.exists() else ""


class Subscriber:
    """A test client on `<prefix>/#` with a persistent QoS 1 session, so it misses nothing across a broker
    restart; collects (topic, payload, retain) in arrival order. `on_arrival(topic)`, when set, runs in its network
    thread right after each message is stored (to act at an exact arrival, without the waiting thread's delay)."""

    def __init__(self, broker: Broker, topic: str = "#", client_id: str = "test-subscriber", durable: bool = False):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.on_arrival: Optional[Callable[[str], None]] = None
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.username_pw_set(USER, PASSWORD)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("test subscriber could not subscribe")
        if durable:  # the broker must have stored the subscription before a test kills it
            subscribed_at = time.time()
            if not until(lambda: broker.saved_after(subscribed_at), 10):
                raise RuntimeError("mosquitto did not save the test subscriber's session")

    def _on_message(self, client, userdata, message) -> None:
        with self.cond:
            self.messages.append((message.topic, message.payload, message.retain))
            self.cond.notify_all()
        if self.on_arrival is not None:
            self.on_arrival(message.topic)

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.messages), timeout)

    def payloads(self, suffix: str) -> list[bytes]:
        with self.cond:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def records(self) -> list[dict]:
        return [json.loads(p) for p in self.payloads("/detections")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def runtime(broker: Broker, *args: str, **popen) -> subprocess.Popen:
    """`edge-yolox -v run` publishing to the broker, as a user (or the systemd unit) starts it; debug logging
    shows that not even debug output carries the password."""
    cmd = [sys.executable, "-m", "edge_yolox.cli", "-v", "run", "--threads", "1", "--device-id", "cam1",
           "--mqtt", broker.url(), "--mqtt-password-file", str(broker.password_file), *args]
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(cmd, cwd=ROOT, text=True, **popen)
