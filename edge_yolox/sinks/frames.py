"""The compact binary frame of the serial output: one detection set, COBS-framed, CRC-16 checked.

Byte layout (all integers little-endian), before COBS:

    offset size  field
    0      1     version (1 or 2)
    1      1     flags: bit 0 = detections were truncated to 255
    2      4     frame index (uint32, wraps)
    6      4     timestamp, milliseconds since the Unix epoch modulo 2**32
    10     2     frame width  (pixels)
    12     2     frame height (pixels)
    14     1     n = number of detections
    15     s*n   per detection (s = 12 in version 1, 14 in version 2): class_id u16, score u16 (score * 10000),
                 x1 u16, y1 u16, x2 u16, y2 u16; version 2 appends track_id u16 (0: not part of a track; a
                 track's id is mapped into 1..65535, wrapping past 65535 back to 1)
    15+s*n 2     CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection) of bytes 0 .. 15+s*n-1

The whole is COBS-encoded (no zero byte inside) and followed by one 0x00 delimiter, so a receiver that
starts mid-stream or loses bytes resynchronises at the next 0x00, and the CRC rejects damaged frames.
Version 1 is what receivers written before tracking expect, byte for byte; a receiver tells the two apart by
byte 0.
"""

from __future__ import annotations

import binascii
import struct
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

VERSIONS = (1, 2)
HEADER = struct.Struct("<BBIIHHB")
DETECTION = {1: struct.Struct("<HHHHHH"), 2: struct.Struct("<HHHHHHH")}  # version -> per-detection layout
CRC = struct.Struct("<H")
MAX_DETECTIONS = 255
FLAG_TRUNCATED = 1
SCORE_SCALE = 10000


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (check value 0x29B1): the standard library's CRC-CCITT (crc_hqx: poly 0x1021, no
    reflection) started at 0xFFFF; tests/serial_decoder.c computes it bit by bit, as a microcontroller would."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: each zero becomes the distance to the next one. Written here rather than
    taken from the `cobs` package: its current releases are source-only (a C compiler on every Pi and Jetson), and
    at ~140 bytes a frame this takes tens of microseconds."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out += bytes((len(block) + 1,)) + block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:  # a full block: code 0xFF, no implied zero after it
                out += b"\xff" + block
                block.clear()
    out += bytes((len(block) + 1,)) + block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        end = i + code
        if code == 0 or end > len(data) or 0 in data[i + 1:end]:
            raise ValueError("malformed COBS block")
        out += data[i + 1:end]
        i = end
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def _u16(value: float) -> int:
    return min(max(int(round(value)), 0), 0xFFFF)


def track_u16(track_id: Optional[int]) -> int:
    """A record's track id as the frame's u16: 0 for none, else 1..65535 (id 65536 wraps to 1, never to 0)."""
    return 0 if track_id is None else (int(track_id) - 1) % 0xFFFF + 1


def encode(record: dict[str, Any], version: int = 1) -> bytes:
    """One frame record (ARCHITECTURE.md, "Records") -> COBS frame with its trailing 0x00 delimiter."""
    detections = record.get("detections", [])
    flags = FLAG_TRUNCATED if len(detections) > MAX_DETECTIONS else 0
    detections = detections[:MAX_DETECTIONS]
    height, width = record.get("size", (0, 0))
    ts_ms = int(record.get("ts", time.time()) * 1000) & 0xFFFFFFFF
    payload = bytearray(HEADER.pack(version, flags, int(record.get("frame", 0)) & 0xFFFFFFFF, ts_ms,
                                    _u16(width), _u16(height), len(detections)))
    layout = DETECTION[version]
    for det in detections:
        fields = [_u16(det["class_id"]), _u16(det["score"] * SCORE_SCALE), *map(_u16, det["box"])]
        if version == 2:
            fields.append(track_u16(det.get("track_id")))
        payload += layout.pack(*fields)
    payload += CRC.pack(crc16_ccitt(bytes(payload)))
    return cobs_encode(bytes(payload)) + b"\x00"


class Detection(NamedTuple):
    class_id: int
    score: float
    box: tuple[int, int, int, int]
    track_id: int = 0  # 0: none (and always in version 1)


@dataclass
class Frame:
    version: int
    flags: int
    frame: int
    ts_ms: int
    width: int
    height: int
    detections: list[Detection]


def decode(frame: bytes) -> Frame:
    """One COBS frame (without its 0x00 delimiter) -> Frame; ValueError when damaged (CRC, length)."""
    payload = cobs_decode(frame)
    if len(payload) < HEADER.size + CRC.size:
        raise ValueError(f"frame too short ({len(payload)} bytes)")
    body, (crc,) = payload[:-CRC.size], CRC.unpack(payload[-CRC.size:])
    if crc16_ccitt(body) != crc:
        raise ValueError("CRC mismatch")
    version, flags, index, ts_ms, width, height, count = HEADER.unpack_from(body)
    layout = DETECTION.get(version)
    if layout is None or len(body) != HEADER.size + count * layout.size:
        raise ValueError(f"bad version {version} or length {len(body)} for {count} detections")
    detections = []
    for k in range(count):
        cls, score, *rest = layout.unpack_from(body, HEADER.size + k * layout.size)
        detections.append(Detection(cls, score / SCORE_SCALE, tuple(rest[:4]), *rest[4:]))
    return Frame(version, flags, index, ts_ms, width, height, detections)


def split(stream: bytes) -> tuple[list[bytes], bytes]:
    """Complete frames in `stream` (delimiter removed, empty ones skipped) and the unfinished rest."""
    *frames, rest = stream.split(b"\x00")
    return [f for f in frames if f], rest
