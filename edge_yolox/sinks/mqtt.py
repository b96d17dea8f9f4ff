"""Detections, events, counts, status and stats to an MQTT broker (paho-mqtt 2.x), built to survive broker outages.

Topics: `<prefix>/<device>/detections` (the frame record, ARCHITECTURE.md "Records", as JSON),
`<prefix>/<device>/status` (`online` retained on every connect, `offline` retained as the last will and on a clean
stop) and `<prefix>/<device>/stats` (the runtime's periodic stats, every sink's health under `outputs`).
With tracking (`--track`):
- `<prefix>/<device>/events`: one message per event of a record's `events`, in order, the event's flat JSON object
  as the record has it: `{"type": "new"|"update"|"end"|"enter"|"leave"|"cross", "track_id", "label", "class_id",
  "score", "box", "ts", "frame"}` plus `zone` (enter/leave), `line` and `direction` (cross), `zones` (new/update),
  `duration_s` (end/leave). Not retained.
- `<prefix>/<device>/zones/<zone>/<label>`: the zone's occupancy for that label, an integer, retained; published
  when it changes, once after start, and again with the first record after each reconnect (a broker restarted
  without persistence has forgotten its retained messages).
- `<prefix>/<device>/lines/<line>/<label>/in` and `.../out`: the line's totals, integers, retained, likewise.
Zone, line and label names become single topic levels: `/ + # %` and control characters in them are
percent-encoded (`a/b` -> `a%2Fb`), so no name adds a level or a wildcard and no two names share a topic.
`detections: events` publishes events and counts only, no per-frame records.

Why flat events rather than Frigate's `{"type", "before": {...}, "after": {...}}`: Frigate sends the whole tracked
object twice because its consumers diff states (sub-labels, snapshots, attributes changing under one event id).
Ours are facts that happened at one instant (entered, crossed, ended): every message is self-contained, says what
happened in `type`, and carries only the state at that instant, so an automation needs no diffing and a Home
Assistant template reads `value_json.zone` or `value_json.direction` directly; a message dropped or duplicated
(at-least-once) never leaves a consumer with a half-applied before/after pair. The record's own event dicts are
published unchanged, so stdout, JSON lines, serial JSON and MQTT show one schema.

Delivery: `write` only appends to a bounded queue (the oldest message is dropped, counted and logged when it
is full). A publisher thread hands messages to paho while connected, at most WINDOW at a time, and a message
leaves this sink only when the broker acknowledged it (PUBACK/PUBCOMP; for QoS 0 when it was written to
the socket). Across a disconnect paho re-sends the unacknowledged window with the same message ids and we
keep our copies until those acks arrive, so with QoS >= 1 nothing is lost while the queue has room.

Crashes: with `spill` set, the queue is also a journal on disk (see Journal). Every accepted message is
written to it before `write` returns and leaves it only once acknowledged (or dropped from a full queue);
at start every unacknowledged entry is queued again. Delivery is at-least-once: a message acknowledged just
before a crash may be sent twice, none is lost. A `kill -9` or any crash of the process loses nothing (the
lines are in the kernel's page cache); a power cut or kernel crash may lose messages accepted in the last
SYNC_INTERVAL_S (plus the time an fsync takes), as the journal is fsynced at that cadence, not per message.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import ssl
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, NamedTuple, Optional
from urllib.parse import urlsplit

import numpy as np

from edge_yolox.errors import ConfigError, redact
from edge_yolox.schema import options
from edge_yolox.sinks.base import Sink, SinkContext

NAME = "mqtt"
WINDOW = 20  # messages handed to paho and not yet acknowledged (mosquitto's default max_inflight_messages)
SYNC_INTERVAL_S = 0.5  # journal fsync cadence: what a power cut may cost (an fsync per message wears SD cards)
COMPACT_MIN_LINES = 1000  # settled journal lines tolerated before a rewrite, however few messages are live
DETECTION_MODES = ("all", "nonempty", "change", "events")
DEFAULTS: dict[str, Any] = {
    "url": "",  # mqtt://[user@]host[:port]/prefix or mqtts://...
    "username": "",  # instead of user@ in the URL
    "password_file": "",  # read at start; $VARS are expanded (systemd: ${CREDENTIALS_DIRECTORY}/mqtt-password)
    "password_env": "EDGE_YOLOX_MQTT_PASSWORD",  # used when no password_file is given
    "client_id": "",  # default edge-yolox-<device>: stable, so the broker sees one client per device
    "qos": 1,
    "retain": False,  # retain the last detections message
    "ca_file": "", "cert_file": "", "key_file": "",  # TLS: CA bundle (default: the system's), client cert/key
    "insecure": False,  # TLS without verifying the broker's certificate (self-signed test setups only)
    "detections": "all",  # all | nonempty (frames with detections) | change (label counts changed) | events (none)
    "max_rate": 0.0,  # at most this many detection messages per second (0: no limit)
    "queue_size": 1000,
    "spill": "",  # journal of the queue (unacknowledged messages), resent at start; survives kill -9
    "flush_timeout_s": 2.0,  # at shutdown, wait this long for the queue to drain while connected
    "keepalive_s": 30,
    "reconnect_min_s": 0.5,
    "reconnect_max_s": 30.0,
    "homeassistant": False,  # Home Assistant discovery: a count sensor per label, fps, zone occupancy, line totals
    "homeassistant_prefix": "homeassistant",
    "homeassistant_labels": [],  # default: person (when the model has it), else the first class; also the labels
    # of the zone and line sensors of zones and lines that take every class
}
log = logging.getLogger(__name__)


class Message(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool
    seq: int = 0  # its journal entry


# ---- configuration


def add_arguments(parser) -> None:
    g = parser.add_argument_group("MQTT output")
    g.add_argument("--mqtt", metavar="URL", help="publish to mqtt://[user@]host[:port]/prefix (mqtts:// for TLS)")
    g.add_argument("--mqtt-password-file", metavar="PATH", help="file holding the MQTT password")
    g.add_argument("--mqtt-password-env", metavar="VAR",
                   help="environment variable holding the MQTT password (default EDGE_YOLOX_MQTT_PASSWORD)")
    g.add_argument("--mqtt-qos", type=int, choices=(0, 1, 2), help="QoS of all messages (default 1)")
    g.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate(s) to verify the broker (mqtts)")
    g.add_argument("--mqtt-cert", metavar="FILE", help="client certificate (mqtts)")
    g.add_argument("--mqtt-key", metavar="FILE", help="client key (mqtts)")
    g.add_argument("--mqtt-insecure", action="store_true", default=None,
                   help="do not verify the broker certificate (self-signed test setups only)")
    g.add_argument("--mqtt-detections", choices=DETECTION_MODES,
                   help="which frames to publish: all (default), nonempty, change; events: none, only the tracking "
                        "events and counts (needs --track)")
    g.add_argument("--mqtt-max-rate", type=float, metavar="HZ", help="at most HZ detection messages per second")
    g.add_argument("--mqtt-queue", type=int, metavar="N", help="messages kept during a broker outage (1000)")
    g.add_argument("--mqtt-spill", metavar="PATH",
                   help="journal file of unacknowledged messages, resent at start (survives crashes)")
    g.add_argument("--mqtt-client-id", metavar="ID", help="MQTT client id (default edge-yolox-<device>)")
    g.add_argument("--mqtt-homeassistant", action="store_true", default=None,
                   help="publish Home Assistant MQTT discovery (count sensors per label, zone and line)")


FLAGS = {"mqtt": "url", "mqtt_password_file": "password_file", "mqtt_password_env": "password_env",
         "mqtt_qos": "qos", "mqtt_ca": "ca_file", "mqtt_cert": "cert_file", "mqtt_key": "key_file",
         "mqtt_insecure": "insecure", "mqtt_detections": "detections", "mqtt_max_rate": "max_rate",
         "mqtt_queue": "queue_size", "mqtt_spill": "spill", "mqtt_client_id": "client_id",
         "mqtt_homeassistant": "homeassistant"}


def section_from_args(args) -> Optional[dict]:
    section = {key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag, None) is not None}
    return section or None


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"outputs.{NAME}.{key}: invalid value {value!r}; allowed: {allowed}")


def _topic_level(text: str) -> str:
    """`text` usable as one topic level (no wildcards or separators)."""
    return "".join("_" if c in "/+#\0" else c for c in text) or "_"


def _name_level(name: str) -> str:
    """A zone, line or label name as exactly one topic level, reversibly: `/ + # %` and control characters
    percent-encoded (so, unlike _topic_level's `_`, two names never meet in one topic)."""
    return "".join(f"%{ord(c):02X}" if c in "/+#%" or ord(c) < 0x20 or ord(c) == 0x7F else c for c in name)


def _readable(opts: dict, key: str) -> Optional[str]:
    if not opts[key]:
        return None
    path = Path(os.path.expandvars(opts[key])).expanduser()
    if not os.access(path, os.R_OK):
        raise ConfigError(f"outputs.{NAME}.{key}: cannot read {path}")
    return str(path)


def read_password(opts: dict) -> Optional[str]:
    """From `password_file`, else from the `password_env` variable; never from the URL or argv."""
    path = _readable(opts, "password_file")
    if path:
        return Path(path).read_text().rstrip("\r\n")
    return os.environ.get(opts["password_env"]) if opts["password_env"] else None


class Settings(NamedTuple):
    host: str
    port: int
    tls: bool
    username: Optional[str]
    prefix: str


def parse_url(url: str, username: str = "") -> Settings:
    form = "mqtt://[user@]host[:port]/prefix or mqtts://..."
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        raise _fail("url", redact(url), form) from None
    if parts.password is not None:
        raise ConfigError(f"outputs.{NAME}.url: a password in the URL would show in `ps` and logs; "
                          f"use password_file (--mqtt-password-file) or password_env")
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise _fail("url", redact(url), form)
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:  # not echoed: in `mqtt://user:secret/x` (host forgotten) the "port" is a password
        raise ConfigError(f"outputs.{NAME}.url: invalid port; allowed: a number 1-65535") from None
    prefix = parts.path.strip("/") or "edge-yolox"
    if any(c in prefix for c in "+#\0"):
        raise _fail("url", redact(url), "a topic prefix without + # characters")
    return Settings(parts.hostname, port, parts.scheme == "mqtts", parts.username or username or None, prefix)


def from_config(section: dict, ctx: SinkContext) -> MqttSink:
    if isinstance(section.get("url"), str) and section["url"]:
        parse_url(section["url"])  # first: the generic checks below would echo a bad URL with its password
    opts = options(section, f"outputs.{NAME}", DEFAULTS)
    if not opts["url"]:
        raise ConfigError(f"outputs.{NAME}.url: required (mqtt://[user@]host[:port]/prefix)")
    settings = parse_url(opts["url"], opts["username"])
    if opts["qos"] not in (0, 1, 2):
        raise _fail("qos", opts["qos"], "0, 1, 2")
    if opts["detections"] not in DETECTION_MODES:
        raise _fail("detections", opts["detections"], ", ".join(DETECTION_MODES))
    if opts["detections"] == "events" and not ctx.tracking:
        raise ConfigError(f"outputs.{NAME}.detections: events needs tracking; add --track (track.enabled: true)")
    for key in ("queue_size", "keepalive_s"):
        if opts[key] < 1:
            raise _fail(key, opts[key], ">= 1")
    if opts["max_rate"] < 0 or opts["flush_timeout_s"] < 0:
        raise _fail("max_rate" if opts["max_rate"] < 0 else "flush_timeout_s", -1, ">= 0")
    if not 0 < opts["reconnect_min_s"] <= opts["reconnect_max_s"]:
        raise ConfigError(f"outputs.{NAME}.reconnect_min_s: must be > 0 and <= reconnect_max_s")
    labels = list(opts["homeassistant_labels"]) or \
        (["person"] if "person" in ctx.class_names else list(ctx.class_names[:1]))
    unknown = [label for label in labels if ctx.class_names and label not in ctx.class_names]
    if opts["homeassistant"] and unknown:
        raise _fail("homeassistant_labels", unknown[0], "labels of the model")
    if opts["homeassistant"]:
        _check_object_ids(ctx)
    password = read_password(opts) if settings.username else None
    spill = Path(os.path.expandvars(opts["spill"])).expanduser() if opts["spill"] else None
    return MqttSink(settings, opts, ctx, password, spill, labels)


def _check_object_ids(ctx: SinkContext) -> None:
    """Home Assistant object ids are [a-z0-9_] slugs: two zone (or line) names with one slug would share sensors."""
    for kind, items in (("zone", ctx.zones), ("line", ctx.lines)):
        seen: dict[str, str] = {}
        for item in items:
            other = seen.setdefault(_slug(item.name), item.name)
            if other != item.name:
                raise ConfigError(f"outputs.{NAME}.homeassistant: {kind}s {other!r} and {item.name!r} give the same "
                                  f"Home Assistant id {_slug(item.name)!r}; rename one")


def _open_journal(path: Path) -> Journal:
    try:
        return Journal(path)
    except OSError as exc:  # a folder, an unwritable place, a missing parent
        raise ConfigError(f"outputs.{NAME}.spill: cannot keep the journal in {path} ({exc.strerror or exc})") from None


# ---- the sink


class MqttSink(Sink):
    name = NAME

    def __init__(self, settings: Settings, opts: dict, ctx: SinkContext, password: Optional[str],
                 spill: Optional[Path], ha_labels: list[str]):
        import paho.mqtt.client as mqtt  # imported here: the runtime starts without paho unless --mqtt is used

        self.settings, self.opts, self.ctx, self.ha_labels = settings, opts, ctx, ha_labels
        device = _topic_level(ctx.device)
        base = f"{settings.prefix}/{device}"
        self.base = base
        self.topics = {kind: f"{base}/{kind}" for kind in ("detections", "status", "stats", "events")}
        self.counts: dict[str, bytes] = {}  # retained count topic -> the payload last queued for it
        self.recount = False  # set on each reconnect: queue every count again (the broker may have lost them)
        self.qos, self.retain = int(opts["qos"]), bool(opts["retain"])
        self.min_interval = 1.0 / opts["max_rate"] if opts["max_rate"] else 0.0
        self.last_published = -float("inf")
        self.last_labels: Optional[Counter] = None

        self.cond = threading.Condition()
        self.queue: deque[Message] = deque()
        self.inflight: dict[int, Message] = {}  # mid -> message handed to paho, not yet acknowledged
        self.early: set[int] = set()  # acks that arrived before publish() returned the mid
        self.direct: set[int] = set()  # our own status/discovery messages, outside the queue
        self.connected = False
        self.outage_logged = False
        self.drop_logged = False
        self.stopping = False
        self.counters = {"published": 0, "dropped": 0, "connects": 0, "restored": 0}
        self.next_seq = 0

        client_id = opts["client_id"] or f"edge-yolox-{device}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=True)
        self.client.suppress_exceptions = True  # a bug in a callback is logged by paho, never kills its loop
        self.client.max_inflight_messages_set(WINDOW)
        self.client.reconnect_delay_set(opts["reconnect_min_s"], opts["reconnect_max_s"])
        self.client.will_set(self.topics["status"], "offline", qos=1, retain=True)
        if settings.username:
            self.client.username_pw_set(settings.username, password)
        if settings.tls:
            self._set_tls()
        # Opened once nothing else can fail, so a config error leaves no journal thread behind.
        self.journal = _open_journal(spill) if spill is not None else None
        if self.journal is not None:
            self._restore(self.journal)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.connect_async(settings.host, settings.port, keepalive=int(opts["keepalive_s"]))
        self.client.loop_start()  # paho's network thread: connects, reconnects with backoff, reads acks
        self.thread = threading.Thread(target=self._publisher, name="mqtt-publisher", daemon=True)
        self.thread.start()
        log.info("mqtt: publishing to %s://%s:%d/%s as %s", "mqtts" if settings.tls else "mqtt", settings.host,
                 settings.port, base, client_id)

    def _set_tls(self) -> None:
        o = self.opts
        try:
            self.client.tls_set(ca_certs=_readable(o, "ca_file"), certfile=_readable(o, "cert_file"),
                                keyfile=_readable(o, "key_file"),
                                cert_reqs=ssl.CERT_NONE if o["insecure"] else ssl.CERT_REQUIRED)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise ConfigError(f"outputs.{NAME}: TLS setup failed for ca_file/cert_file/key_file ({exc})") from None
        self.client.tls_insecure_set(bool(o["insecure"]))

    # ---- inference thread: filter, serialise, queue

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        if self._wanted(record):
            self._put(Message(self.topics["detections"], _json(record), self.qos, self.retain))
        for event in record.get("events", ()):
            self._put(Message(self.topics["events"], _json(event), self.qos, False))
        if self.recount:
            self.recount = False
            self.counts.clear()
        for topic, value in self._count_topics(record):
            payload = str(int(value)).encode()
            if self.counts.get(topic) != payload:
                self.counts[topic] = payload
                self._put(Message(topic, payload, self.qos, True))

    def _wanted(self, record: dict[str, Any]) -> bool:
        """Whether this frame's record is published under the `detections` mode and `max_rate`."""
        detections = record.get("detections", [])
        mode = self.opts["detections"]
        if mode == "events" or (mode == "nonempty" and not detections):
            return False
        labels = Counter(d["label"] for d in detections) if mode == "change" else None
        if labels is not None and labels == self.last_labels:
            return False
        now = time.monotonic()
        if now - self.last_published < self.min_interval:
            return False
        self.last_published, self.last_labels = now, labels
        return True

    def _count_topics(self, record: dict[str, Any]) -> list[tuple[str, int]]:
        """(topic, value) of every zone occupancy and line total in the record."""
        out = [(self._zone_topic(zone, label), n) for zone, labels in record.get("zones", {}).items()
               for label, n in labels.items()]
        out += [(self._line_topic(line, label, direction), totals[direction])
                for line, labels in record.get("lines", {}).items() for label, totals in labels.items()
                for direction in ("in", "out")]
        return out

    def _zone_topic(self, zone: str, label: str) -> str:
        return f"{self.base}/zones/{_name_level(zone)}/{_name_level(label)}"

    def _line_topic(self, line: str, label: str, direction: str) -> str:
        return f"{self.base}/lines/{_name_level(line)}/{_name_level(label)}/{direction}"

    def stats(self, stats: dict[str, Any]) -> None:
        self._put(Message(self.topics["stats"], _json(stats), self.qos, False))

    def health(self) -> dict[str, Any]:
        with self.cond:
            return {**self.counters, "connected": self.connected, "queued": len(self.queue) + len(self.inflight)}

    def _put(self, message: Message) -> None:
        with self.cond:
            message = message._replace(seq=self.next_seq)
            self.next_seq += 1
            if self.journal is not None:
                self.journal.add(message)
            self._enqueue(message)

    def _enqueue(self, message: Message) -> None:
        """Under self.cond."""
        if len(self.queue) >= self.opts["queue_size"]:
            dropped = self.queue.popleft()
            self._settle(dropped)
            self.counts.pop(dropped.topic, None)  # a lost count: queued again with the next record
            self.counters["dropped"] += 1
            if not self.drop_logged:  # once per outage; the stats carry the count
                log.warning("mqtt: queue full (%d messages); dropping the oldest", self.opts["queue_size"])
                self.drop_logged = True
        self.queue.append(message)
        self.cond.notify_all()

    def _settle(self, message: Message) -> None:
        """`message` is done with (acknowledged or dropped): it leaves the journal."""
        if self.journal is not None:
            self.journal.settle(message.seq)

    # ---- publisher thread

    def _publisher(self) -> None:
        from paho.mqtt.client import MQTT_ERR_NO_CONN, MQTT_ERR_SUCCESS

        while True:
            with self.cond:
                while not self.stopping and not (self.connected and self.queue and len(self.inflight) < WINDOW):
                    self.cond.wait()
                if self.stopping:
                    return
                message = self.queue.popleft()
            # Never under our lock: paho calls on_publish under its own.
            info = self.client.publish(message.topic, message.payload, message.qos, message.retain)
            with self.cond:
                if info.rc == MQTT_ERR_SUCCESS or (info.rc == MQTT_ERR_NO_CONN and message.qos > 0):
                    # Taken by paho (a QoS>0 message published while disconnected is sent on reconnect).
                    if info.mid in self.early:
                        self.early.discard(info.mid)
                        self.counters["published"] += 1
                        self._settle(message)
                    else:
                        self.inflight[info.mid] = message
                elif info.rc == MQTT_ERR_NO_CONN:
                    self.queue.appendleft(message)  # QoS 0 refused: paho saw the disconnect before we did
                    self.cond.wait(0.1)
                else:
                    log.error("mqtt: publish to %s refused (%s); message dropped", message.topic, info.rc)
                    self.counters["dropped"] += 1
                    self._settle(message)

    # ---- paho network thread callbacks

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            if not self.outage_logged:
                log.warning("mqtt: broker %s:%d refused the connection: %s", self.settings.host, self.settings.port,
                            reason)
                self.outage_logged = True
            return
        log.info("mqtt: connected to %s:%d", self.settings.host, self.settings.port)
        own = [client.publish(self.topics["status"], "online", qos=1, retain=True).mid]
        if self.opts["homeassistant"]:
            own += [client.publish(topic, payload, qos=1, retain=True).mid for topic, payload in self._discovery()]
        with self.cond:
            self.direct.update(own)
            self.connected, self.outage_logged, self.drop_logged = True, False, False
            self.recount = self.recount or self.counters["connects"] > 0  # a reconnect: see self.recount
            self.counters["connects"] += 1
            self.cond.notify_all()

    def _on_connect_fail(self, client, userdata) -> None:
        if not self.outage_logged:
            log.warning("mqtt: cannot reach broker %s:%d; queueing, retrying with backoff", self.settings.host,
                        self.settings.port)
            self.outage_logged = True

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        with self.cond:
            was_connected, self.connected = self.connected, False
            # paho forgets unsent QoS 0 packets on reconnect (QoS>0 it re-sends itself): queue them again.
            lost = [mid for mid, m in self.inflight.items() if m.qos == 0]
            self.queue.extendleft(reversed([self.inflight.pop(mid) for mid in lost]))
            queued = len(self.queue) + len(self.inflight)
        if was_connected and not self.stopping:
            log.warning("mqtt: connection lost (%s); %d messages queued, reconnecting", reason, queued)
            self.outage_logged = True

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self.cond:
            message = self.inflight.pop(mid, None)
            if mid in self.direct:
                self.direct.discard(mid)
            elif message is not None:
                self.counters["published"] += 1
                self._settle(message)
            else:
                self.early.add(mid)
            self.cond.notify_all()

    def _discovery(self) -> list[tuple[str, bytes]]:
        """Home Assistant MQTT discovery, tied to our status: one count sensor per label (not in `events` mode,
        where no records are published), an fps sensor, an occupancy sensor per zone and label, and a total per
        line, label and direction. A zone or line that takes every class gets sensors for `ha_labels`."""
        from edge_yolox import __version__

        device_id = f"edge_yolox_{_topic_level(self.ctx.device)}"
        device = {"identifiers": [device_id], "name": f"edge-yolox {self.ctx.device}", "manufacturer": "edge-yolox",
                  "model": f"{self.ctx.model} on {self.ctx.board}", "sw_version": __version__}
        common = {"availability_topic": self.topics["status"], "payload_available": "online",
                  "payload_not_available": "offline", "state_class": "measurement", "device": device}
        count = "{{ value_json.detections | selectattr('label', 'equalto', LABEL) | list | count }}"
        sensors = {f"{_slug(label)}_count": {"name": f"{label} count", "state_topic": self.topics["detections"],
                                             "value_template": count.replace("LABEL", json.dumps(label))}
                   for label in self.ha_labels if self.opts["detections"] != "events"}
        sensors["fps"] = {"name": "fps", "state_topic": self.topics["stats"], "unit_of_measurement": "fps",
                          "value_template": "{{ value_json.fps }}"}
        for zone in self.ctx.zones:
            for label in zone.classes or self.ha_labels:
                sensors[f"zone_{_slug(zone.name)}_{_slug(label)}"] = {
                    "name": f"{zone.name} {label}", "state_topic": self._zone_topic(zone.name, label),
                    "icon": "mdi:account-multiple"}
        for line in self.ctx.lines:
            for label in line.classes or self.ha_labels:
                for direction in ("in", "out"):
                    sensors[f"line_{_slug(line.name)}_{_slug(label)}_{direction}"] = {
                        "name": f"{line.name} {label} {direction}", "state_class": "total_increasing",
                        "state_topic": self._line_topic(line.name, label, direction), "icon": "mdi:counter"}
        prefix = self.opts["homeassistant_prefix"]
        return [(f"{prefix}/sensor/{device_id}/{key}/config",
                 _json({**common, **config, "unique_id": f"{device_id}_{key}"})) for key, config in sensors.items()]

    # ---- shutdown, restart

    def close(self) -> None:
        deadline = time.monotonic() + self.opts["flush_timeout_s"]
        with self.cond:
            # Drain while connected or still making the first connection; not when the broker is known down.
            while (self.queue or self.inflight) and (self.connected or not self.outage_logged) \
                    and time.monotonic() < deadline:
                self.cond.wait(0.05)
            self.stopping = True
            self.cond.notify_all()
        self.thread.join(timeout=2)
        if self.connected:
            info = self.client.publish(self.topics["status"], "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError) as exc:  # the broker went away just now: the last will covers it
                log.debug("mqtt: offline status not confirmed: %s", exc)
        self.client.disconnect()
        # loop_stop joins paho's thread, which may sit in a connect() to a dead host for its timeout:
        # bound the wait so a shutdown during an outage still ends well within systemd's watchdog.
        stopper = threading.Thread(target=self.client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(timeout=3)
        unsent = self.health()["queued"]
        if self.journal is not None:
            self.journal.close()
            if unsent:
                log.info("mqtt: %d undelivered messages kept in %s, sent at the next start", unsent,
                         self.journal.path)
        elif unsent:
            log.warning("mqtt: %d messages not delivered at shutdown (set outputs.mqtt.spill to keep them)", unsent)

    def _restore(self, journal: Journal) -> None:
        with self.cond:
            for message in journal.restored:
                self._enqueue(message)
            self.next_seq = journal.restored[-1].seq + 1 if journal.restored else 0
            self.counters["restored"] = len(journal.restored)
        journal.restored = []
        if self.counters["restored"]:
            log.info("mqtt: %d unacknowledged messages restored from %s", self.counters["restored"], journal.path)
        journal.start()


class Journal:
    """The MQTT queue on disk, one JSON object a line: `{"seq": N, "topic", "payload", "qos", "retain"}` when a
    message is accepted, `{"done": N}` once it is acknowledged or dropped. Each line reaches the kernel with one
    write() before the caller goes on, so a crash of the process loses nothing; a thread fsyncs every
    SYNC_INTERVAL_S, so a power cut loses at most that last stretch (a lost `done` only means a duplicate).

    Bounded: the sink keeps at most queue_size + WINDOW messages live, and once settled lines outnumber
    max(COMPACT_MIN_LINES, live ones) (checked every SYNC_INTERVAL_S) the file is rewritten with the live
    messages only (tmp file, fsync, rename, fsync of the folder): it holds about twice that, plus what one
    interval adds. The start does the same rewrite, which also drops a line torn by a power cut before
    anything is appended after it.
    On a write error (disk full) messages stay in memory and a rewrite is tried every SYNC_INTERVAL_S.
    """

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(path.name + ".tmp")
        self.lock = threading.Lock()
        self.restored = self._load()
        self.live = {m.seq: _line(m) for m in self.restored}  # seq -> its line, for rewrites
        self.fd: Optional[int] = None
        self.lines = 0  # in the file
        self.tail: Optional[list[str]] = None  # lines appended while a rewrite is under way
        self.unsynced = self.failing = False
        self.compact()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sync_loop, name="mqtt-journal", daemon=True)

    def _load(self) -> list[Message]:
        entries: dict[int, Message] = {}
        bad = 0
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with f:
            for number, raw in enumerate(f):
                try:
                    item = json.loads(raw)
                    if "done" in item:
                        entries.pop(int(item["done"]), None)
                    else:  # no seq: a spill file of an earlier version (messages only)
                        seq = int(item["seq"]) if "seq" in item else number
                        entries[seq] = Message(str(item["topic"]), str(item["payload"]).encode(), int(item["qos"]),
                                               bool(item["retain"]), seq)
                except (ValueError, KeyError, TypeError, RecursionError):
                    bad += 1
        if bad:
            log.warning("mqtt: %s: %d damaged lines skipped (a write cut short by a crash?)", self.path, bad)
        return sorted(entries.values(), key=lambda m: m.seq)

    def start(self) -> None:
        self.thread.start()

    def add(self, message: Message) -> None:
        line = _line(message)
        with self.lock:
            self.live[message.seq] = line
            self._append(line)

    def settle(self, seq: int) -> None:
        with self.lock:
            if self.live.pop(seq, None) is not None:
                self._append(json.dumps({"done": seq}) + "\n")

    def _append(self, line: str) -> None:
        """Under self.lock."""
        if self.tail is not None:
            self.tail.append(line)
        if self.failing or self.fd is None:  # the next rewrite writes every live message from memory
            return
        try:
            _write_all(self.fd, line)
        except OSError as exc:
            self._failed(exc)
            return
        self.lines += 1
        self.unsynced = True

    def _failed(self, exc: OSError) -> None:
        if not self.failing:
            log.error("mqtt: cannot write the journal %s (%s); keeping messages in memory, retrying",
                      self.path, exc.strerror or exc)
        self.failing = True  # a half-written line must not get another glued to it: append nothing more

    def compact(self) -> None:
        """Rewrite the file with the live messages only. The fsync runs outside the lock (it can take long on
        an SD card and write() must not wait for it); lines appended meanwhile go to the old file and to
        `tail`, copied to the new one under the lock just before the rename."""
        with self.lock:
            snapshot, self.tail = list(self.live.values()), []
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            try:
                _write_all(fd, "".join(snapshot))
                os.fsync(fd)
                with self.lock:
                    _write_all(fd, "".join(self.tail))
                    os.replace(self.tmp, self.path)
                    old, self.fd = self.fd, fd
                    self.lines, self.unsynced = len(snapshot) + len(self.tail), True
                    recovered, self.failing = self.failing, False
            except BaseException:
                os.close(fd)
                raise
        finally:
            with self.lock:
                self.tail = None
        if old is not None:
            os.close(old)
        if recovered:
            log.info("mqtt: journal %s writable again", self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)  # makes the rename itself durable
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self.sync()

    def sync(self) -> None:
        with self.lock:
            fd, self.unsynced = self.fd, False
        if fd is not None:
            os.fsync(fd)

    def _sync_loop(self) -> None:
        while not self.stopped.wait(SYNC_INTERVAL_S):
            try:
                with self.lock:
                    live = len(self.live)
                    due = self.failing or self.lines - live >= max(COMPACT_MIN_LINES, live)
                    unsynced = self.unsynced
                if due:
                    self.compact()
                elif unsynced:
                    self.sync()
            except OSError as exc:
                with self.lock:
                    self._failed(exc)

    def close(self) -> None:
        """The final rewrite leaves only what is still unacknowledged."""
        self.stopped.set()
        self.thread.join()
        try:
            self.compact()
        except OSError as exc:
            log.error("mqtt: cannot rewrite the journal %s at shutdown (%s)", self.path, exc.strerror or exc)
        with self.lock:  # paho's thread may still settle a late ack: it must find no descriptor
            fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def _line(message: Message) -> str:
    return json.dumps({"seq": message.seq, "topic": message.topic, "payload": message.payload.decode(),
                       "qos": message.qos, "retain": message.retain}, separators=(",", ":")) + "\n"


def _write_all(fd: int, text: str) -> None:
    data = text.encode()
    if os.write(fd, data) != len(data):  # a short write: the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower())
