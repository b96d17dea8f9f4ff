"""Zones and lines: the geometry (inside, side, crossing) on hand-checked cases, the coordinate rule, and the
`zones:`/`lines:`/`track:` config with its flags — every mistake one error naming the file (or "command line")
and the dotted key."""

from __future__ import annotations

import numpy as np
import pytest

from edge_yolox.arguments import Parser
from edge_yolox.config import load_config, state_dir
from edge_yolox.errors import ConfigError
from edge_yolox.events import regions
from edge_yolox.runflags import add_run_arguments, overrides_from_args
from edge_yolox.zones import LEFT, RIGHT, Line, Zone, crossing, inside, side

SQUARE = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], np.float64)
NAMES = ["person", "bicycle", "car", "motorcycle", "tv"]  # a model's class names


# ---- geometry


def test_inside_a_square_edges_and_corners_included():
    points = [(15, 15), (5, 15), (25, 15), (15, 5), (15, 25), (10, 15), (20, 15), (15, 10), (15, 20), (10, 10),
              (20, 20), (20.000001, 15), (9.999999, 10)]
    assert inside(SQUARE, points).tolist() == [True, False, False, False, False, True, True, True, True, True,
                                               True, False, False]


def test_inside_a_concave_and_a_self_crossing_polygon():
    u_shape = np.array([[0, 0], [3, 0], [3, 3], [2, 3], [2, 1], [1, 1], [1, 3], [0, 3]], np.float64)
    assert inside(u_shape, [(0.5, 2), (2.5, 2), (1.5, 2), (1.5, 0.5), (1.5, 1)]).tolist() == \
        [True, True, False, True, True]  # the notch is outside; its floor is an edge
    bowtie = np.array([[0, 0], [4, 4], [4, 0], [0, 4]], np.float64)  # two triangles meeting at (2, 2)
    assert inside(bowtie, [(0.5, 2), (3.5, 2), (2, 0.5), (2, 3.5), (2, 2)]).tolist() == \
        [True, True, False, False, True]  # even-odd: the halves, not the gaps between them


def test_side_is_left_and_right_as_the_image_shows_it():
    a, b = (0, 0), (10, 0)  # pointing right on the screen: left of it is up (smaller y)
    assert side(a, b, (5, -1)) == LEFT and side(a, b, (5, 1)) == RIGHT and side(a, b, (20, 0)) == 0
    down = ((0, 0), (0, 10))  # pointing down the screen: its left is the screen's right
    assert side(*down, (1, 5)) == LEFT and side(*down, (-1, 5)) == RIGHT


@pytest.mark.parametrize("p, q, expected", [
    ((5, 1), (5, -1), LEFT),  # through the middle, upwards: to the left of a->b
    ((5, -1), (5, 1), RIGHT),
    ((0, 1), (0, -1), LEFT),  # through the end point a: the segment includes it
    ((12, 1), (12, -1), 0),  # beside the segment, beyond b
    ((5, 1), (5, 0), 0),  # onto the line: not across it yet
    ((5, 0), (5, -1), 0),  # from the line: the engine tests from the last point strictly on a side instead
    ((5, 1), (6, 2), 0),  # same side
    ((-5, 1), (15, -1), LEFT),  # a long diagonal through the middle
    ((-5, 5), (-1, -5), 0),  # across the line's extension before a
])
def test_crossing(p, q, expected):
    assert crossing((0, 0), (10, 0), p, q) == expected


def test_normalised_or_pixel_coordinates():
    normal = Zone("z", ((0.25, 0.5), (1.0, 0.5), (1.0, 1.0)))
    assert normal.pixels(640, 480).tolist() == [[160, 240], [640, 240], [640, 480]]
    pixels = Zone("z", ((1, 1), (100, 1), (100, 50)))  # one value above 1: all pixels
    assert pixels.pixels(640, 480).tolist() == [[1, 1], [100, 1], [100, 50]]
    assert Line("l", (0.5, 0.0), (0.5, 1.0)).pixels(200, 100).tolist() == [[100, 0], [100, 100]]


@pytest.mark.parametrize("make", [
    lambda: Zone("z", ((0, 0), (1, 1), (2, 2))),  # collinear: no area
    lambda: Zone("z", ((0, 0), (1, 1))),
    lambda: Zone("a/b", ((0, 0), (1, 0), (0, 1))),
    lambda: Zone("z", ((0, 0), (1, 0), (float("nan"), 1))),
    lambda: Line("l", (3, 3), (3, 3)),
    lambda: Line("l", (0, 0), (1, 1), direction="up"),
])
def test_degenerate_regions_are_refused(make):
    with pytest.raises(ValueError):
        make()


# ---- config, flags and zones files


def parse(*argv: str) -> dict:
    parser = Parser(prog="edge-yolox run")
    add_run_arguments(parser)
    return overrides_from_args(parser.parse_args(list(argv)))


def test_zones_file_flags_and_layers(tmp_path):
    zones = tmp_path / "zones.yaml"
    zones.write_text("zones:\n  door:\n    polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]]\n    classes: person\n"
                     "lines:\n  gate:\n    points: [[320, 0], [320, 480]]\n    direction: right\n")
    site = tmp_path / "site.yaml"
    site.write_text("zones:\n  door:\n    min_frames: 5\n  yard:\n    polygon: [[0, 0], [1, 0], [1, 1]]\n"
                    "track:\n  update_interval_s: 0\n")
    layer = parse("--zone", "bay.1=0,0,0.2,0,0.2,0.2", "--line", "gate=300,0,300,480", "--state-dir", "/tmp/s")
    config = load_config("x86", str(site), layer, str(zones))
    assert list(config.zones) == ["door", "yard", "bay.1"]  # a dotted name stays one name
    assert config.zones["door"].min_frames == 5 and config.zones["door"].classes == ["person"]  # merged key by key
    assert config.lines["gate"].points == [[300, 0], [300, 480]] and config.lines["gate"].direction == "right"
    assert config.track.enabled and config.track.update_interval_s == 0  # zones turn tracking on
    assert config.origin("lines.gate.points") == "command line" and config.origin("zones.door.polygon") == str(zones)
    assert state_dir(config.runtime).as_posix() == "/tmp/s"
    assert parse("--track") == {"track": {"enabled": True}} and "track" not in parse()


def test_state_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/a:{tmp_path}/b")
    assert state_dir(load_config("x86").runtime) == tmp_path / "a"  # systemd's first StateDirectory=
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir(load_config("x86").runtime) == tmp_path / "edge-yolox"


@pytest.mark.parametrize("text, key, allowed", [
    ("zones:\n  d:\n    polygon: [[0, 0], [1, 0]]\n", "zones.d.polygon", "3 to 1000 points"),
    ("zones:\n  d:\n    polygon: [[0, 0], [0.5, 0.5], [1, 1]]\n", "zones.d.polygon", "enclosing some area"),
    ("zones:\n  d:\n    polygon: [[0, 0], [1, .nan], [1, 1]]\n", "zones.d.polygon", "a finite number"),
    ("zones:\n  d:\n    polygon: [[0, 0], [1, 0, 3], [1, 1]]\n", "zones.d.polygon", "2 numbers"),
    ("zones:\n  d:\n    polygon: [[0, 0], [-1, 0], [1, 1]]\n", "zones.d.polygon", "0.0 to 100000.0"),
    ("zones:\n  d:\n    polygon: {a: 1}\n", "zones.d.polygon", "a list of"),
    ("zones:\n  d:\n    classes: [person]\n", "zones.d.polygon", "missing"),
    ("zones:\n  d:\n    polygon: [[0, 0], [1, 0], [1, 1]]\n    min_frames: 0\n", "zones.d.min_frames", "1 to"),
    ("zones:\n  d:\n    polygon: [[0, 0], [1, 0], [1, 1]]\n    colour: red\n", "zones.d.colour", "unknown key"),
    ("zones:\n  a/b:\n    polygon: [[0, 0], [1, 0], [1, 1]]\n", "zones.a/b", "MQTT topic level"),
    ("zones:\n  'x#':\n    polygon: [[0, 0], [1, 0], [1, 1]]\n", "zones.x#", "'#'"),
    ("zones:\n  '':\n    polygon: [[0, 0], [1, 0], [1, 1]]\n", "zones.", "1 to 64 characters"),
    ("zones: [door]\n", "zones", "a mapping"),
    ("lines:\n  g:\n    points: [[1, 1], [1, 1]]\n", "lines.g.points", "2 distinct points"),
    ("lines:\n  g:\n    points: [[1, 1], [2, 2], [3, 3]]\n", "lines.g.points", "2 points [[x1, y1], [x2, y2]]"),
    ("lines:\n  g:\n    points: [[0, 0], [1, 1]]\n    direction: up\n", "lines.g.direction", "left, right"),
    ("track:\n  low: 0.6\n", "track.low", "<= track.thresh"),
    ("track:\n  anchor: top\n", "track.anchor", "bottom, center"),
    ("track:\n  match: 0\n", "track.match", "0.01 to 1.0"),
    ("track:\n  enabled: false\nlines:\n  g:\n    points: [[0, 0], [1, 1]]\n", "track.enabled",
     "set it to true (--track)"),
])
def test_bad_zones_name_the_file_and_key(tmp_path, text, key, allowed):
    config = tmp_path / "site.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config("x86", str(config))
    message = str(err.value)
    assert message.startswith(f"{config}: {key}") and allowed in message and "\n" not in message, message


def test_track_enabled_false_with_zones_is_refused_by_the_file_that_says_so(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("track:\n  enabled: false\n")
    with pytest.raises(ConfigError, match=rf"^{config}: track\.enabled: false, but zones and lines need tracking"):
        load_config("x86", str(config), parse("--zone", "d=0,0,1,0,1,1"))
    assert load_config("x86", str(config), parse("--zone", "d=0,0,1,0,1,1", "--track")).track.enabled


def test_zones_file_holds_only_zones_and_lines(tmp_path):
    zones = tmp_path / "zones.yaml"
    zones.write_text("zones: {}\nmodel:\n  path: /tmp/evil.onnx\n")
    with pytest.raises(ConfigError, match=rf"^{zones}: model: unknown key; allowed in a zones file: zones, lines"):
        load_config("x86", None, None, str(zones))
    zones.write_text("zones:\n  d:\n    polygon: [[0, 0], [1, 0]]\n")
    with pytest.raises(ConfigError, match=rf"^{zones}: zones\.d\.polygon"):  # the zones file, not the flags
        load_config("x86", None, {"detect": {"conf": 0.3}}, str(zones))


@pytest.mark.parametrize("argv, fragment", [
    (["--zone", "d=0,0,1,0,1"], "--zone: invalid value 'd=0,0,1,0,1'; allowed: NAME=X,Y,X,Y,X,Y[,...]"),
    (["--zone", "0,0,1,0,1,1"], "--zone"),
    (["--zone", "d=a,b,c,d,e,f"], "--zone"),
    (["--line", "g=0,0,1,1,2,2"], "--line: invalid value 'g=0,0,1,1,2,2'; allowed: NAME=X1,Y1,X2,Y2"),
])
def test_bad_zone_and_line_flags(argv, fragment):
    with pytest.raises(ConfigError, match="^command line: ") as err:
        parse(*argv)
    assert fragment in str(err.value)


def test_zone_flag_values_are_checked_like_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^command line: zones\.d\.polygon: invalid value nan"):
        load_config("x86", None, parse("--zone", "d=0,0,nan,0,1,1"))
    with pytest.raises(ConfigError, match=r"^command line: lines\.a\+b: invalid name"):
        load_config("x86", None, parse("--line", "a+b=0,0,1,1"))


def test_classes_checked_against_the_model(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("zones:\n  d:\n    polygon: [[0, 0], [1, 0], [1, 1]]\n    classes: [person, tvmonitor, 2]\n"
                      "lines:\n  g:\n    points: [[0, 0], [1, 1]]\n    classes: motorbike\n")
    zones, lines = regions(load_config("x86", str(config)), NAMES)
    assert zones[0].classes == ("person", "tv", "car")  # aliases and ids become the model's names
    assert lines[0].classes == ("motorcycle",) and lines[0].a == (0, 0) and lines[0].direction == "left"
    config.write_text("lines:\n  g:\n    points: [[0, 0], [1, 1]]\n    classes: [person, unicorn]\n")
    with pytest.raises(ConfigError, match=rf"^{config}: lines\.g\.classes: unknown class 'unicorn'; this model has: "
                                          "person, bicycle"):
        regions(load_config("x86", str(config)), NAMES)
    config.write_text("zones:\n  d:\n    polygon: [[0, 0], [1, 0], [1, 1]]\n    classes: [9]\n")
    with pytest.raises(ConfigError, match=r"zones\.d\.classes: unknown class '9'"):
        regions(load_config("x86", str(config)), NAMES)
