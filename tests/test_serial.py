"""Serial output over a real pty pair: JSON lines, binary frames (version 1, and version 2 with track ids)
decoded by the documented C decoder, corrupted bytes rejected by the CRC, a stalled reader never blocks, and the
far end vanishing and coming back (a USB adapter unplugged and re-plugged behind a stable /dev/serial/by-id
symlink)."""

from __future__ import annotations

import binascii
import json
import os
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runtime_helpers import cli

from edge_yolox.errors import ConfigError
from edge_yolox.runflags import demo_model
from edge_yolox.sinks import SinkContext, frames
from edge_yolox.sinks import serial as serial_sink

DECODER_C = Path(__file__).with_name("serial_decoder.c")
CTX = SinkContext(device="test", board="x86", model="yolox-nano", source="synthetic")
TRACKING = SinkContext(device="test", board="x86", model="yolox-nano", source="synthetic", tracking=True)
# A v1 frame as the format was published before version 2 existed (frames.py at commit 5bfc51b): receivers built
# for it must keep getting these exact bytes.
V1_GOLDEN = "0201020701010a4bf1235e8002e00102010478200a0215062c0190010203881301010107ffffffffd9b800"


def record(index: int, count: int = 2, tracks: bool = False) -> dict:
    """`tracks`: detections carry track ids as a tracking run's records do (every third one untracked, null)."""
    dets = [{"label": "person", "class_id": k % 80, "score": round(0.5 + k / 1000, 4),
             "box": [10.0 + k, 20.0, 300.5 + k, 400.0]} for k in range(count)]
    if tracks:
        for k, det in enumerate(dets):
            det["track_id"] = None if k % 3 == 2 else 65530 + index + k  # crosses 65535: the u16 wraps to 1
    return {"ts": 1732451234.123 + index, "frame": index, "source": "synthetic", "board": "x86",
            "model": "yolox-nano", "size": [480, 640], "latency_ms": {"pre": 1.0, "infer": 40.0, "post": 0.2},
            "fps": 25.0, "detections": dets}


class Pty:
    """A pty pair whose device side is reached through a symlink, like /dev/serial/by-id/..."""

    def __init__(self, link: Path):
        self.link = link
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()  # holding the slave keeps master reads from failing with EIO
        path = os.ttyname(self.slave)
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path)
        tmp.replace(self.link)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)
        self.link.unlink()

    def read(self, until: callable, timeout: float = 10.0) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while not until(data) and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                data += os.read(self.master, 65536)
        return data


@pytest.fixture()
def pty(tmp_path):
    port = Pty(tmp_path / "ttyUSB-by-id")
    yield port
    for fd in (port.master, port.slave):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture(scope="module")
def c_decoder(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler: needed to run the documented C decoder")
    exe = tmp_path_factory.mktemp("dec") / "decoder"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-O2", "-DDECODER_MAIN", str(DECODER_C), "-o", str(exe)],
                   check=True)
    return exe


def c_decode(exe: Path, data: bytes) -> list[str]:
    return subprocess.run([str(exe)], input=data, capture_output=True, check=True).stdout.decode().splitlines()


def frame_numbers(data: bytes) -> list:
    """The frame index of each complete frame in `data` by the Python decoder, "bad" when rejected."""
    out: list = []
    for f in frames.split(data)[0]:
        try:
            out.append(frames.decode(f).frame)
        except ValueError:
            out.append("bad")
    return out


def sink_for(pty: Pty, ctx: SinkContext = CTX, **kw) -> serial_sink.SerialSink:
    section = {"port": str(pty.link), "reconnect_min_s": 0.05, "reconnect_max_s": 0.2, **kw}
    return serial_sink.from_config(section, ctx)


def check_c_lines(lines: list[str], sent: list[dict], version: int) -> None:
    """The C decoder's lines (`<frame> <count> v<version> <class>:<score>:<box>:<track>...`) against the records."""
    assert len(lines) == len(sent)
    for line, rec in zip(lines, sent):
        index, count, tag, *dets = line.split()
        assert int(index) == rec["frame"] and int(count) == len(rec["detections"]) and tag == f"v{version}"
        for text, det in zip(dets, rec["detections"]):
            cls, score, box, track = text.split(":")
            assert int(cls) == det["class_id"] and abs(float(score) - det["score"]) <= 1e-4
            assert [int(v) for v in box.split(",")] == [round(v) for v in det["box"]]
            assert int(track) == (frames.track_u16(det.get("track_id")) if version == 2 else 0)


# ---- codec


def test_crc_is_ccitt_false():
    assert frames.crc16_ccitt(b"123456789") == 0x29B1  # the catalogued check value of CRC-16/CCITT-FALSE


@given(st.binary(max_size=600))
def test_crc_matches_stdlib_and_cobs_round_trips(data):
    assert frames.crc16_ccitt(data) == binascii.crc_hqx(data, 0xFFFF)
    encoded = frames.cobs_encode(data)
    assert 0 not in encoded
    assert frames.cobs_decode(encoded) == data


@given(st.integers(0, 300), st.integers(0, 2**32 - 1), st.sampled_from(frames.VERSIONS))
def test_binary_frame_round_trip(count, index, version):
    rec = record(index % 10, count, tracks=True)
    rec["frame"] = index
    frame_bytes = frames.encode(rec, version)
    assert frame_bytes.endswith(b"\x00") and 0 not in frame_bytes[:-1]
    decoded = frames.decode(frame_bytes[:-1])
    assert decoded.version == version and decoded.frame == index and (decoded.width, decoded.height) == (640, 480)
    assert len(decoded.detections) == min(count, 255) and decoded.flags == (count > 255)
    payload = frames.cobs_decode(frame_bytes[:-1])
    assert payload[0] == version and len(payload) == 17 + (12, 14)[version - 1] * min(count, 255)
    for (cls, score, box, track), det in zip(decoded.detections, rec["detections"]):
        assert cls == det["class_id"] and abs(score - det["score"]) <= 0.5e-4
        assert box == tuple(round(v) for v in det["box"])
        assert track == (frames.track_u16(det["track_id"]) if version == 2 else 0)


def test_version_1_bytes_are_unchanged():
    rec = {"ts": 1732451234.123, "frame": 7, "size": [480, 640],
           "detections": [{"label": "person", "class_id": 0, "score": 0.8312, "box": [10.4, 20.6, 300.5, 400.0],
                           "track_id": 3},  # a tracking run's record still makes the v1 bytes: ids left out
                          {"label": "car", "class_id": 2, "score": 0.5, "box": [0, 0, 65535, 70000]}]}
    assert frames.encode(rec).hex() == frames.encode(rec, 1).hex() == V1_GOLDEN


def test_track_ids_map_into_u16_without_zero():
    cases = {None: 0, 1: 1, 2: 2, 65535: 65535, 65536: 1, 65537: 2, 131070: 65535, 131071: 1}
    assert {tid: frames.track_u16(tid) for tid in cases} == cases
    assert all(frames.track_u16(tid) != 0 for tid in range(1, 300000, 97))


def test_unknown_version_is_rejected_by_both_decoders(c_decoder):
    body = bytearray(frames.cobs_decode(frames.encode(record(0, 2), 2)[:-1]))
    body[0] = 3
    body[-2:] = frames.CRC.pack(frames.crc16_ccitt(bytes(body[:-2])))  # a valid CRC: only the version is wrong
    frame = frames.cobs_encode(bytes(body)) + b"\x00"
    with pytest.raises(ValueError, match="bad version 3"):
        frames.decode(frame[:-1])
    assert c_decode(c_decoder, frame) == ["bad"]


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="outputs.serial.format"):
        serial_sink.from_config({"port": "/dev/null", "format": "xml"}, CTX)
    with pytest.raises(ConfigError, match="outputs.serial.port"):
        serial_sink.from_config({}, CTX)
    for version in (3, -1):
        with pytest.raises(ConfigError, match=r"^outputs\.serial\.version: invalid value"):
            serial_sink.from_config({"port": "/dev/null", "version": version}, CTX)


def test_flag_parsing():
    import argparse

    parser = argparse.ArgumentParser()
    serial_sink.add_arguments(parser)
    args = parser.parse_args(["--serial", "/dev/ttyUSB0:57600", "--serial-format", "binary", "--serial-version", "2"])
    assert serial_sink.section_from_args(args) == {"port": "/dev/ttyUSB0", "baud": 57600, "format": "binary",
                                                   "version": 2}
    assert serial_sink.section_from_args(parser.parse_args(["--serial", "/dev/ttyACM0"])) == {"port": "/dev/ttyACM0"}


# ---- a real pty


def test_json_lines_arrive(pty):
    sink = sink_for(pty)
    sent = [record(i, i % 3) for i in range(20)]
    for rec in sent:
        sink.write(rec)
    data = pty.read(lambda d: d.count(b"\n") >= 20)
    sink.close()
    assert [json.loads(line) for line in data.splitlines()] == sent


def test_binary_frames_decode_with_the_documented_c_decoder(pty, c_decoder):
    sink = sink_for(pty, format="binary")
    sent = [record(i, i % 4) for i in range(30)]
    for rec in sent:
        sink.write(rec)
    data = pty.read(lambda d: d.count(b"\x00") >= 30)
    sink.close()
    check_c_lines(c_decode(c_decoder, data), sent, 1)


@pytest.mark.parametrize(("ctx", "section", "version"), [(TRACKING, {}, 2), (CTX, {"version": 2}, 2),
                                                           (TRACKING, {"version": 1}, 1)])
def test_track_ids_in_version_2_frames_decode_in_c(pty, c_decoder, ctx, section, version):
    """Version 2 by default when the run tracks, either version when asked; one stream mixing tracked and
    untracked detections and ids past 65535, through a real pty to the C decoder."""
    sink = sink_for(pty, ctx, format="binary", **section)
    sent = [record(i, i % 5, tracks=True) for i in range(30)]
    for rec in sent:
        sink.write(rec)
    data = pty.read(lambda d: d.count(b"\x00") >= 30)
    sink.close()
    lines = c_decode(c_decoder, data)
    check_c_lines(lines, sent, version)
    assert [f.version for f in map(frames.decode, frames.split(data)[0])] == [version] * 30
    if version == 2:  # the ids as sent: 65530.. wrapping to 1, and 0 for the untracked ones
        assert {int(det.rsplit(":", 1)[1]) for line in lines for det in line.split()[3:]} >= {0, 65535, 1}


def test_a_tracking_run_sends_version_2_frames_with_its_track_ids(pty, c_decoder, tmp_path):
    """`edge-yolox run --track --serial PTY --serial-format binary` on the scripted gate sequence: version 2 by
    default, and the C decoder reads each detection's track id as the run's JSON lines record it."""
    jsonl = tmp_path / "records.jsonl"
    reader = threading.Thread(target=lambda: received.append(pty.read(lambda d: d.count(b"\x00") >= 80, 120)))
    received: list[bytes] = []
    reader.start()
    proc = cli("run", "--source", "synthetic:gate", "--model", demo_model(), "--threads", "1", "--track",
               "--limit", "80", "--no-stdout", "--jsonl", jsonl, "--serial", pty.link, "--serial-format", "binary")
    reader.join()
    assert proc.returncode == 0, proc.stderr[-2000:]
    sent = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(sent) == 80 and any(d["track_id"] for r in sent for d in r["detections"])
    check_c_lines(c_decode(c_decoder, received[0]), sent, 2)


def test_corrupted_bytes_are_rejected_and_the_stream_resynchronises(c_decoder):
    clean = [frames.encode(record(i, 3, tracks=True), 1 + i % 2) for i in range(5)]  # both versions mixed
    stream = [bytearray(f) for f in clean]
    stream[1][7] ^= 0x10  # one flipped bit in frame 1
    assert stream[1][7] != 0
    del stream[3][4]  # a lost byte in frame 3
    data = b"".join(stream)
    expected = [c_decode(c_decoder, f)[0] for f in clean]
    assert c_decode(c_decoder, data) == [expected[0], "bad", expected[2], "bad", expected[4]]
    assert frame_numbers(data) == [0, "bad", 2, "bad", 4]


def test_far_end_vanishes_and_comes_back(pty):
    sink = sink_for(pty, format="binary")
    sink.write(record(0))
    assert frames.split(pty.read(lambda d: b"\x00" in d))[0]
    pty.unplug()
    for i in range(1, 4):  # written while unplugged: the port fails, the sink retries with backoff
        sink.write(record(i))
        time.sleep(0.05)
    time.sleep(0.3)
    assert not sink.health()["connected"]
    pty.plug()
    sink.write(record(4))
    data = pty.read(lambda d: 4 in frame_numbers(d))
    sink.close()
    received = frame_numbers(data)
    assert received == [1, 2, 3, 4]  # frames written while unplugged waited in the queue
    assert sink.counters["reopens"] >= 1


def test_stalled_reader_never_blocks_writes_and_gets_the_newest_frames(pty):
    sink = sink_for(pty, write_timeout_s=0.05, queue_size=8)
    big = record(0, 40)  # ~3 kB per line: the pty buffer fills after a few
    done = threading.Event()

    def produce():
        for i in range(300):
            sink.write({**big, "frame": i})
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert done.wait(30), "write() blocked on a stalled serial reader"
    # A stall far longer than queue_size write timeouts: the queued (newest) frames must wait it out.
    time.sleep(1.0)
    data = pty.read(lambda d: b'"frame":299,' in d and d.endswith(b"\n"))
    health = sink.health()
    sink.close()
    assert health["dropped"] > 0 and health["timeouts"] > 0
    parsed = [json.loads(line)["frame"] for line in data.split(b"\n") if line]  # no line was cut
    assert parsed == sorted(parsed) and parsed[-8:] == list(range(292, 300))


def test_close_under_a_stalled_reader_is_clean(tmp_path, caplog, monkeypatch):
    """close() while the writer waits on a full pty, 30 times at varying moments: the writer thread raises
    nothing, nothing is reopened or written after close(), and close() returns promptly."""
    crashes = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    caplog.set_level("DEBUG", logger=serial_sink.__name__)
    big = record(0, 40)
    for round_ in range(30):
        pty = Pty(tmp_path / f"tty{round_}")
        sink = sink_for(pty, write_timeout_s=0.05, queue_size=64)
        for i in range(30 + round_):  # 20 lines fill the pty: the rest wait in the queue
            sink.write({**big, "frame": i})
        time.sleep(0.01 * (round_ % 7))  # close while polling, mid-write, between messages
        first = len(caplog.records)
        started = time.monotonic()
        sink.close()
        elapsed = time.monotonic() - started
        assert not sink.thread.is_alive() and sink.port is None
        after_close = [r.getMessage() for r in caplog.records[first:]]
        assert all("not written at shutdown" in m for m in after_close), after_close
        assert elapsed < 0.5, f"round {round_}: close() took {elapsed:.2f} s"
        pty.unplug()
    assert crashes == []
    assert not [r for r in caplog.records if "reopen" in r.getMessage() or r.levelname == "ERROR"]
