"""The tracking evaluation behind the README's "Tracking" tables: the built-in demo model (INT8 NCNN, one thread,
conf 0.1) and the C++ ByteTrack (edge_yolox.tracker, default `track:` settings) on the scripted sequences of
edge_yolox.sequences at 416×320, scored against their ground-truth identities with motmetrics (MOTA, IDF1, ID
switches) and TrackEval's HOTA when it is installed (`pip install --no-deps trackeval==1.3.0`: its PyPI package
requires the GUI opencv-python, which must not replace the headless one); then the zone entries and leaves and
line crossings that edge_yolox.events counts with the gate layout from the tracker's output, against the same
Events fed the ground truth, on every sequence.

    python bench/track_eval.py [--seeds 0 1 2 3 4 5 6 7] [--frames 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the evaluation helpers the tests use

from mot_helpers import FPS, SIZE, count_events, hypotheses, play, score, track, tracker  # noqa: E402

from edge_yolox.detector import Detector  # noqa: E402
from edge_yolox.runflags import demo_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)), help="seeds of the tracks sequence")
    parser.add_argument("--frames", type=int, default=300, help="frames of each tracks sequence")
    args = parser.parse_args()

    detector = Detector(demo_model(), conf=0.1, threads=1)
    print(f"demo model + ByteTrack, {SIZE[1]}x{SIZE[0]} at {FPS:.0f} fps\n")
    print("| sequence | frames | objects | MOTA | IDF1 | ID switches | HOTA | misses | false positives | tracks |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    totals = {"num_switches": 0, "num_misses": 0, "num_false_positives": 0, "num_objects": 0}
    events = []
    start = time.perf_counter()
    for name, seed in [("gate", 0)] + [("tracks", s) for s in args.seeds]:
        played = play(name, seed, 10_000 if name == "gate" else args.frames, detector)
        results = track(played, tracker())
        hyps = hypotheses(results)
        r = score(played.truths, hyps)
        for k in totals:
            totals[k] += r[k]
        hota = "—" if r["hota"] is None else f"{r['hota']:.3f}"
        ids = len({int(i) for h in hyps for i in h.ids})
        print(f"| {name} {seed} | {r['frames']} | {r['num_unique_objects']} | {r['mota']:.3f} | {r['idf1']:.3f} | "
              f"{r['num_switches']} | {hota} | {r['num_misses']} | {r['num_false_positives']} | {ids} |")
        events.append((f"{name} {seed}", *count_events(played, results)))
    detector.close()
    mota = 1 - (totals["num_misses"] + totals["num_false_positives"] + totals["num_switches"]) / totals["num_objects"]
    print(f"\nall: MOTA {mota:.3f}, {totals['num_switches']} ID switches over {totals['num_objects']} objects "
          f"({time.perf_counter() - start:.0f} s)\n")

    print("the gate layout's events, counted from the tracker / from the ground truth (the gate script was written "
          "for exact counts; on the tracks sequences shapes may cross the line while covered)\n")
    print("| sequence | gate in | gate out | bay enter | bay leave |")
    print("|---|---|---|---|---|")
    keys = [("cross", "gate", "in"), ("cross", "gate", "out"), ("enter", "bay", ""), ("leave", "bay", "")]
    for label, counted, truth in events:
        cells = [f"{counted[k]} / {truth[k]}" + ("" if counted[k] == truth[k] else " ✗") for k in keys]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
