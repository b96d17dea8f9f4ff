"""MQTT output figures for the README, against a real local mosquitto (started here, as in the tests):

- sustained messages/s of the MQTT sink (QoS 1, every message acknowledged) and its CPU share;
- the CPU share of the MQTT output at a camera's 30 fps;
- messages lost when the broker is killed for 10 s mid-run (QoS 1; goal 0);
- RSS growth over 10,000 frames (goal <= 5 MB): of the sink alone, and with --runtime-frames N of a real
  `edge-yolox run --demo --mqtt ...` process (the built-in INT8 NCNN model on the synthetic scene, one thread).

    python bench/mqtt.py [--messages 20000] [--runtime-frames 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the broker helper the tests use

from mqtt_helpers import Broker, Subscriber  # noqa: E402

from edge_yolox.sinks import SinkContext  # noqa: E402
from edge_yolox.sinks import mqtt as mqtt_sink  # noqa: E402

CTX = SinkContext(device="bench", board="x86", model="yolox-nano", source="synthetic")


def record(index: int) -> dict:
    """A frame record as the runtime writes it, with three detections (~500 bytes of JSON)."""
    dets = [{"label": label, "class_id": cid, "score": 0.8765, "box": [101.25, 52.5, 311.0, 420.75]}
            for label, cid in (("person", 0), ("person", 0), ("dog", 16))]
    return {"ts": time.time(), "frame": index, "source": "camera0", "board": "rpi4", "model": "yolox-nano-int8",
            "size": [480, 640], "latency_ms": {"pre": 1.1, "infer": 41.7, "post": 0.2}, "fps": 23.9,
            "detections": dets}


def sink(broker: Broker, **kw) -> mqtt_sink.MqttSink:
    return mqtt_sink.from_config({"url": broker.url("bench"), "password_file": str(broker.password_file),
                                  "reconnect_min_s": 0.1, "reconnect_max_s": 1.0, **kw}, CTX)


def drained(s: mqtt_sink.MqttSink, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while s.health()["queued"] and time.monotonic() < deadline:
        time.sleep(0.005)


def rss_kb(pid: str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def throughput(broker: Broker, messages: int) -> dict:
    s = sink(broker, queue_size=messages)
    drained(s, 10)  # connected
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(messages):
        s.write(record(i))
    drained(s)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    s.close()
    return {"messages": messages, "msgs_per_s": round(messages / wall), "cpu_share_pct": round(100 * cpu / wall, 1)}


def camera_rate(broker: Broker, fps: float = 30.0, seconds: float = 10.0) -> dict:
    s = sink(broker)
    drained(s, 10)
    frames = int(fps * seconds)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(frames):
        s.write(record(i))
        time.sleep(max(0.0, t0 + (i + 1) / fps - time.perf_counter()))
    drained(s)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    s.close()
    return {"fps": fps, "cpu_share_pct": round(100 * cpu / wall, 2)}


def outage(broker: Broker, fps: float = 30.0, before: float = 3.0, down: float = 10.0, after: float = 3.0) -> dict:
    sub = Subscriber(broker, "bench/+/detections", client_id="bench-outage", durable=True)
    s = sink(broker)
    drained(s, 10)
    sent = 0
    stop = threading.Event()

    def produce() -> None:
        nonlocal sent
        t0 = time.perf_counter()
        while not stop.is_set():
            s.write(record(sent))
            sent += 1
            time.sleep(max(0.0, t0 + sent / fps - time.perf_counter()))

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(before)
    broker.kill()
    time.sleep(down)
    broker.start()
    time.sleep(after)
    stop.set()
    producer.join()
    drained(s, 60)
    health = s.health()
    s.close()
    sub.wait_for(lambda m: len({json.loads(p)["frame"] for _, p, _ in m}) >= sent, timeout=30)
    received = [json.loads(p)["frame"] for _, p, _ in sub.messages]
    sub.close()
    unique = set(received)
    return {"sent": sent, "lost": len(set(range(sent)) - unique), "duplicates": len(received) - len(unique),
            "outage_s": down, "dropped_by_queue": health["dropped"]}


def sink_rss(broker: Broker, frames: int = 10000, warmup: int = 1000) -> dict:
    s = sink(broker)
    drained(s, 10)
    start = 0
    for i in range(frames):
        s.write(record(i))
        if i % 100 == 99:
            drained(s)  # the pace of a camera: the queue stays short, so growth would be a leak
        if i == warmup - 1:
            start = rss_kb()
    drained(s)
    end = rss_kb()
    s.close()
    return {"frames": frames, "rss_start_mb": round(start / 1024, 1), "growth_mb": round((end - start) / 1024, 2)}


def runtime_rss(broker: Broker, frames: int, warmup: int = 1000) -> dict:
    # the built-in demo (INT8 NCNN on the synthetic scene): the model a device runs, at tens of fps
    cmd = [sys.executable, "-m", "edge_yolox.cli", "run", "--demo", "--threads", "1", "--limit", str(frames),
           "--device-id", "bench", "--mqtt", broker.url("bench"),
           "--mqtt-password-file", str(broker.password_file), "--stats-interval", "10"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    start = peak = done = 0
    t0 = time.perf_counter()
    for _ in proc.stdout:  # one JSON line per frame
        done += 1
        if done == warmup:
            start = rss_kb(str(proc.pid))
        elif done > warmup and done % 200 == 0:
            peak = max(peak, rss_kb(str(proc.pid)))
    wall = time.perf_counter() - t0
    proc.wait()
    return {"frames": done, "fps": round(done / wall, 1), "rss_after_warmup_mb": round(start / 1024, 1),
            "growth_mb": round((peak - start) / 1024, 2), "exit": proc.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--runtime-frames", type=int, default=0,
                        help="also a real run of N frames (10000: a few minutes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker").start()
        try:
            results = {"throughput_qos1": throughput(broker, args.messages), "camera_30fps": camera_rate(broker),
                       "outage_10s_qos1": outage(broker), "sink_rss_10000_frames": sink_rss(broker)}
            if args.runtime_frames:
                results["runtime_rss"] = runtime_rss(broker, args.runtime_frames)
        finally:
            broker.kill()
    for name, values in results.items():
        print(f"{name:24} " + "  ".join(f"{k}={v}" for k, v in values.items()))


if __name__ == "__main__":
    main()
