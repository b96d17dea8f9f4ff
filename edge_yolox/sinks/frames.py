"""The compact binary frame of the serial output: one detection set, COBS-framed, CRC-16 checked.

Byte layout (all integers little-endian), before COBS:

    offset size  field
    0      1     version (1)
    1      1     flags: bit 0 = detections were truncated to 255
    2      4     frame index (uint32, wraps)
    6      4     timestamp, milliseconds since the Unix epoch modulo 2**32
    10     2     frame width  (pixels)
    12     2     frame height (pixels)
    14     1     n = number of detections
    15     12*n  per detection: class_id u16, score u16 (score * 10000), x1 u16, y1 u16, x2 u16, y2 u16
    15+12n 2     CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection) of bytes 0 .. 15+12n-1

The whole is COBS-encoded (no zero byte inside) and followed by one 0x00 delimiter, so a receiver that
starts mid-stream or loses bytes resynchronises at the next 0x00, and the CRC rejects damaged frames.
"""

from __future__ import annotations

import binascii
import struct
import time
from dataclasses import dataclass
from typing import Any

VERSION = 1
HEADER = struct.Struct("<BBIIHHB")
DETECTION = struct.Struct("<HHHHHH")
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


def encode(record: dict[str, Any]) -> bytes:
    """One frame record (ARCHITECTURE.md, "Records") -> COBS frame with its trailing 0x00 delimiter."""
    detections = record.get("detections", [])
    flags = FLAG_TRUNCATED if len(detections) > MAX_DETECTIONS else 0
    detections = detections[:MAX_DETECTIONS]
    height, width = record.get("size", (0, 0))
    ts_ms = int(record.get("ts", time.time()) * 1000) & 0xFFFFFFFF
    payload = bytearray(HEADER.pack(VERSION, flags, int(record.get("frame", 0)) & 0xFFFFFFFF, ts_ms,
                                    _u16(width), _u16(height), len(detections)))
    for det in detections:
        payload += DETECTION.pack(_u16(det["class_id"]), _u16(det["score"] * SCORE_SCALE), *map(_u16, det["box"]))
    payload += CRC.pack(crc16_ccitt(bytes(payload)))
    return cobs_encode(bytes(payload)) + b"\x00"


@dataclass
class Frame:
    flags: int
    frame: int
    ts_ms: int
    width: int
    height: int
    detections: list[tuple[int, float, tuple[int, int, int, int]]]  # (class_id, score, box)


def decode(frame: bytes) -> Frame:
    """One COBS frame (without its 0x00 delimiter) -> Frame; ValueError when damaged (CRC, length)."""
    payload = cobs_decode(frame)
    if len(payload) < HEADER.size + CRC.size:
        raise ValueError(f"frame too short ({len(payload)} bytes)")
    body, (crc,) = payload[:-CRC.size], CRC.unpack(payload[-CRC.size:])
    if crc16_ccitt(body) != crc:
        raise ValueError("CRC mismatch")
    version, flags, index, ts_ms, width, height, count = HEADER.unpack_from(body)
    if version != VERSION or len(body) != HEADER.size + count * DETECTION.size:
        raise ValueError(f"bad version {version} or length {len(body)} for {count} detections")
    detections = []
    for k in range(count):
        cls, score, *box = DETECTION.unpack_from(body, HEADER.size + k * DETECTION.size)
        detections.append((cls, score / SCORE_SCALE, tuple(box)))
    return Frame(flags, index, ts_ms, width, height, detections)


def split(stream: bytes) -> tuple[list[bytes], bytes]:
    """Complete frames in `stream` (delimiter removed, empty ones skipped) and the unfinished rest."""
    *frames, rest = stream.split(b"\x00")
    return [f for f in frames if f], rest
