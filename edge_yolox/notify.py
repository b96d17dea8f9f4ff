"""sd_notify over $NOTIFY_SOCKET (READY, WATCHDOG, STATUS, STOPPING): how a run tells systemd it is alive.

Silent unless given an address: only the `run` command reads systemd's environment (`Notifier.from_env()`), so a
pipeline built elsewhere (the benchmark, tests) never talks to a service manager it did not start under.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Optional

log = logging.getLogger(__name__)


class Notifier:
    """Speaks the sd_notify datagram protocol; a no-op without an address (from_env: no NOTIFY_SOCKET)."""

    def __init__(self, address: Optional[str] = None, watchdog_usec: Optional[int] = None):
        self.address = address
        # Ping at half the watchdog period, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._last_ping = 0.0
        self._sock: Optional[socket.socket] = None
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls) -> Notifier:
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            usec = None  # the watchdog is meant for another process
        return cls(os.environ.get("NOTIFY_SOCKET"), int(usec) if usec and usec.isdigit() else None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, message: str) -> None:
        if self._sock is None:
            return
        address = self.address
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        try:
            self._sock.sendto(message.encode(), address)
        except OSError as exc:  # systemd gone or socket full: never fatal to detection
            log.warning("sd_notify failed: %s", exc)

    def ready(self) -> None:
        self.send("READY=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Call from the processing loop: a loop that hangs stops pinging and systemd restarts it."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
