"""`edge-yolox service install|uninstall|status`: render and install a hardened systemd unit running `edge-yolox run`
(which speaks sd_notify through edge_yolox.notify)."""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edge_yolox.errors import ConfigError, EdgeYoloxError

if TYPE_CHECKING:
    from edge_yolox.config import Config

UNIT_DIR = "etc/systemd/system"
GROUPS = ("video", "dialout")  # cameras (/dev/video*, /dev/media*, Pi /dev/vchiq) and serial ports
OPTIONAL_GROUPS = ("jtop",)  # jetson-stats' /run/jtop.sock is root:jtop 0660; added where the group exists
# Argus clients (the Jetson CSI camera) reach nvargus-daemon through /tmp/argus_socket, which PrivateTmp= hides:
# bind just that socket into the private /tmp (the exposure score stays the same), after the daemon started.
ARGUS = {"argus_order": "After=nvargus-daemon.service\n", "argus_bind": "BindPaths=/tmp/argus_socket\n"}
SECRET_KEYS = {"password_file": "mqtt-password", "key_file": "mqtt-client-key"}  # outputs.mqtt keys -> credential
HOME_DIRS = ("/home", "/root", "/run/user")  # ProtectHome=yes hides them from the service


@dataclass
class Rendered:
    unit: str
    config: str
    notes: list[str]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `service` on the CLI's subparsers (called by edge_yolox.cli)."""
    parser = subparsers.add_parser("service", help="install, uninstall or show the systemd service")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install", help="render, install, enable and start the unit", usage="edge-yolox service install "
        "[--name NAME] [--user USER] [--watchdog S] [--root DIR] [--dry-run] -- RUN-ARGS...",
        description="Renders a systemd unit and /etc/NAME/config.yaml from the same arguments as `edge-yolox run` "
                    "(after --). Secrets (MQTT password file, TLS key) are passed with LoadCredential=, never "
                    "written into the unit or the config.")
    _common(install)
    install.add_argument("--user", default="edge-yolox", help="unprivileged system user to run as (created)")
    install.add_argument("--watchdog", type=int, default=30, metavar="S", help="WatchdogSec (default 30)")
    install.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then the arguments of `edge-yolox run`")
    install.set_defaults(func=cmd_install)
    uninstall = actions.add_parser("uninstall", help="stop, disable and remove the unit and its config")
    _common(uninstall)
    uninstall.set_defaults(func=cmd_uninstall)
    status = actions.add_parser("status", help="systemctl status of the service")
    status.add_argument("--name", default="edge-yolox")
    status.set_defaults(func=cmd_status)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="edge-yolox", help="unit name (default edge-yolox)")
    parser.add_argument("--root", default="/", help="operate on an OS image in DIR: no users, no running systemd")
    parser.add_argument("--dry-run", action="store_true", help="print what would be written and run; change nothing")


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", name):
        raise ConfigError(f"service --name: invalid value {name!r}; allowed: letters, digits, - _ . @")
    return name


def run_layer(run_args: list[str]) -> tuple[Optional[str], dict, Config]:
    """The board and the config layer (user YAML from --config, the --zones file, then the flags) that `run` would
    use, and the config they give, validated like `run` does (errors name the file that set the key)."""
    from edge_yolox.arguments import Parser
    from edge_yolox.config import load_config, merge, read_yaml, read_zones
    from edge_yolox.files import read_text
    from edge_yolox.runflags import add_run_arguments, overrides_from_args

    parser = Parser(prog="edge-yolox service install -- ")
    add_run_arguments(parser)
    args = parser.parse_args(run_args[1:] if run_args[:1] == ["--"] else run_args)
    loaded = load_config(args.board, args.config, overrides_from_args(args), args.zones)
    layer: dict = {}
    if args.config:
        layer = read_yaml(read_text(args.config, "config"), args.config)
    if args.zones:
        layer = merge(layer, read_zones(args.zones), args.zones, {})
    layer = merge(layer, overrides_from_args(args), "command line", {})
    board = args.board or layer.pop("board", None)
    return board, layer, loaded


def _absolute(value: str) -> str:
    """A relative path that exists here, made absolute (the service runs in its own working directory)."""
    path = Path(value).expanduser()
    return str(path.resolve()) if not path.is_absolute() and path.exists() else str(path) if path.exists() else value


def render(name: str, user: str, run_args: list[str], watchdog_s: int = 30, groups: tuple[str, ...] = GROUPS,
           python: str = sys.executable) -> Rendered:
    """The unit and the config file for `edge-yolox run RUN_ARGS` as a service; validated like `run`."""
    import yaml

    from edge_yolox import __version__
    from edge_yolox.sources import uses_argus

    _check_name(name)
    if not re.fullmatch(r"[a-z_][a-z0-9_-]*", user) or user == "root":
        raise ConfigError(f"service --user: invalid value {user!r}; allowed: an unprivileged user name")
    if watchdog_s < 2:
        raise ConfigError(f"service --watchdog: invalid value {watchdog_s}; allowed: >= 2 seconds")
    board, layer, loaded = run_layer(run_args)  # a bad argument fails the install, not the boot
    state = f"/var/lib/{name}"
    notes: list[str] = []
    credentials: list[str] = []

    model = layer.get("model", {})
    if model.get("path"):
        model["path"] = _absolute(model["path"])
    source = layer.get("source", {})
    if source.get("uri"):
        source["uri"] = _absolute(source["uri"])
    runtime = layer.get("runtime", {})
    if runtime.get("state_dir"):
        runtime["state_dir"] = _absolute(runtime["state_dir"])
        if not (runtime["state_dir"] + "/").startswith(state + "/"):
            notes.append(f"ProtectSystem=strict leaves the service only {state} to write: runtime.state_dir "
                         f"{runtime['state_dir']} will be read-only (leave it out: the default is {state})")
    outputs = layer.setdefault("outputs", {})
    for section in outputs.values():
        for key in ("path", "spill", "ca_file", "cert_file"):
            if isinstance(section.get(key), str) and section[key]:
                section[key] = _absolute(section[key])
    mqtt = outputs.get("mqtt")
    if mqtt:
        for key, credential in SECRET_KEYS.items():
            if mqtt.get(key):
                credentials.append(_credential(credential, _absolute(str(mqtt[key])), f"outputs.mqtt.{key}"))
                mqtt[key] = f"${{CREDENTIALS_DIRECTORY}}/{credential}"
        mqtt.setdefault("spill", "${STATE_DIRECTORY}/mqtt-spill.jsonl")  # systemd sets it for StateDirectory=
        if "@" in str(mqtt.get("url", "")).split("//", 1)[-1].split("/", 1)[0] and not mqtt.get("password_file"):
            notes.append("the MQTT URL names a user but no --mqtt-password-file: the service does not see your "
                         "shell's environment, so it will connect without a password")
    if "stdout" not in outputs and [k for k, v in outputs.items() if v.get("enabled", True)]:
        outputs["stdout"] = {"enabled": False}  # JSON lines at camera rate would flood the journal
        notes.append("stdout JSON lines are off in the service (other outputs are configured)")
    hidden = [p for p in _paths(layer) if p.startswith(HOME_DIRS)]
    if hidden:
        notes.append(f"ProtectHome= hides {', '.join(hidden)} from the service: move them to {state}/ or /opt")
    if python.startswith(HOME_DIRS):
        notes.append(f"ProtectHome= hides this Python ({python}) from the service, which will not start: install "
                     f"edge-yolox in a venv outside /home (e.g. /opt/edge-yolox) and run its `edge-yolox service "
                     f"install`")
    if not outputs:
        del layer["outputs"]

    config = {"board": board, **layer} if board else layer
    config_path = f"/etc/{name}/config.yaml"
    config_text = (f"# Rendered by `edge-yolox service install` (edge-yolox {__version__}) for {name}.service.\n"
                   f"# Edit, then: systemctl restart {name}. Secrets are not here: see LoadCredential= in the unit.\n"
                   + yaml.safe_dump(config, sort_keys=False))
    _unit_safe("the Python interpreter", python, absolute=True)
    exec_start = " ".join(_quote(a, "the Python interpreter") for a in
                          (python, "-m", "edge_yolox.cli", "run", "--config", config_path))
    unit = UNIT_TEMPLATE.format(
        name=name, version=__version__, exec_start=exec_start, user=user, watchdog=watchdog_s,
        groups=f"SupplementaryGroups={' '.join(groups)}\n" if groups else "",
        credentials="".join(c + "\n" for c in credentials), stop_timeout=max(30, watchdog_s),
        **(ARGUS if uses_argus(loaded.source, loaded.camera) else dict.fromkeys(ARGUS, "")))
    return Rendered(unit, config_text, notes)


def _paths(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        return [p for v in tree.values() for p in _paths(v)]
    return [tree] if isinstance(tree, str) and tree.startswith("/") else []


def _unit_safe(what: str, value: str, absolute: bool = False) -> str:
    """`value` with systemd's `%` specifiers escaped, after refusing control characters (a newline would add a
    directive). `absolute`: a path starting with `/`, which also rules out ExecStart's `-@+!:` prefixes (`+` runs
    as root) and LoadCredential's reading of a relative name as one of systemd's own credentials."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{what}: invalid value {value!r}; control characters (newlines, tabs) are not allowed")
    if absolute and not value.startswith("/"):
        raise ConfigError(f"{what}: invalid value {value!r}; the service needs an absolute path")
    return value.replace("%", "%%")


def _quote(arg: str, what: str) -> str:
    """One ExecStart word: specifiers and `$` escaped, C-style escapes inside double quotes (systemd.service(5))."""
    arg = _unit_safe(what, arg).replace("$", "$$")
    if not any(c.isspace() or c in "\"'\\;" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _credential(name: str, path: str, what: str) -> str:
    """LoadCredential=NAME:PATH (no quoting or escapes in this setting, only specifiers)."""
    return f"LoadCredential={name}:{_unit_safe(what, path, absolute=True)}"


# Each hardening line costs nothing the runtime needs; what is left out, and why, is said in place.
UNIT_TEMPLATE = """\
# {name}.service, rendered by `edge-yolox service install` (edge-yolox {version})
[Unit]
Description=edge-yolox object detection ({name})
Wants=network-online.target
After=network-online.target
{argus_order}# Never give up: a camera or network down for an hour must be picked up again when it returns, with nobody
# logging in. Bad arguments cannot loop here: `service install` validated them like `run` does.
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# READY comes after the first frame; the watchdog is fed while frames arrive, so a hung loop or a camera that
# stays silent (and is not reopened in the process) gets the process restarted.
WatchdogSec={watchdog}
TimeoutStartSec=180
TimeoutStopSec={stop_timeout}
Restart=on-failure
# Each failed start costs a model load; 15 s keeps a long outage from heating a Pi for nothing.
RestartSec=15
User={user}
Group={user}
{groups}StateDirectory={name}
StateDirectoryMode=0750
WorkingDirectory=%S/{name}
Environment=HOME=%S/{name}
{credentials}UMask=0077

NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
{argus_bind}PrivateMounts=yes
# Cameras, serial ports and accelerators are devices: the video/dialout groups decide access, so
# PrivateDevices= stays off (it would hide /dev/video*, /dev/ttyUSB*, Jetson's /dev/nvhost-*).
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
# AF_NETLINK: glibc's getaddrinfo(AI_ADDRCONFIG), used by RTSP/GStreamer sources to resolve camera hosts.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @obsolete @mount @debug @cpu-emulation
SystemCallErrorNumber=EPERM
# MemoryDenyWriteExecute= stays off: XNNPACK and some BLAS builds generate code at run time.

[Install]
WantedBy=multi-user.target
"""


def _systemctl(*args: str, root: str = "/", dry_run: bool = False, check: bool = True) -> int:
    cmd = ["systemctl", *(["--root", root] if root != "/" else []), *args]
    if dry_run:
        print("would run: " + " ".join(cmd))
        return 0
    if shutil.which("systemctl") is None:
        raise EdgeYoloxError("systemctl not found: this system does not use systemd")
    result = subprocess.run(cmd, check=False)
    if check and result.returncode != 0:
        raise EdgeYoloxError(f"`{' '.join(cmd)}` failed (exit {result.returncode})")
    return result.returncode


def _existing_groups(root: str) -> tuple[str, ...]:
    """The groups of GROUPS and OPTIONAL_GROUPS that exist (systemd refuses to start a unit naming an unknown
    group)."""
    group_file = Path(root) / "etc" / "group"
    try:
        names = {line.split(":", 1)[0] for line in group_file.read_text().splitlines()}
    except OSError:
        return GROUPS
    return tuple(g for g in GROUPS + OPTIONAL_GROUPS if g in names)


def _ensure_user(user: str, name: str, dry_run: bool) -> None:
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--user-group", "--home-dir", f"/var/lib/{name}", "--no-create-home",
           "--shell", "/usr/sbin/nologin", "--comment", "edge-yolox service", user]
    if dry_run:
        print("would run: " + " ".join(cmd))
        return
    if subprocess.run(cmd, check=False).returncode != 0:
        raise EdgeYoloxError(f"cannot create the system user {user!r} (`{' '.join(cmd)}`)")


def _write(path: Path, text: str, dry_run: bool) -> None:
    if dry_run:
        print(f"# ---- {path}\n{text}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    print(f"wrote {path}")


def _require_root(args: argparse.Namespace) -> None:
    if not args.dry_run and args.root == "/" and os.geteuid() != 0:
        raise EdgeYoloxError(f"`service {args.action}` changes /etc and systemd: run it with sudo (or use --dry-run)")


def cmd_install(args: argparse.Namespace) -> int:
    name = _check_name(args.name)
    _require_root(args)
    root = Path(args.root)
    rendered = render(name, args.user, args.run_args, args.watchdog, _existing_groups(args.root))
    for note in rendered.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.root == "/":
        _ensure_user(args.user, name, args.dry_run)
    _write(root / "etc" / name / "config.yaml", rendered.config, args.dry_run)
    _write(root / UNIT_DIR / f"{name}.service", rendered.unit, args.dry_run)
    if args.root == "/":
        _systemctl("daemon-reload", dry_run=args.dry_run)
        _systemctl("enable", "--now", f"{name}.service", dry_run=args.dry_run)
        if not args.dry_run:
            print(f"started {name}; follow it with: journalctl -u {name} -f")
    else:
        _systemctl("enable", f"{name}.service", root=args.root, dry_run=args.dry_run)
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    name = _check_name(args.name)
    _require_root(args)
    root = Path(args.root)
    unit = root / UNIT_DIR / f"{name}.service"
    if not unit.exists() and not args.dry_run:
        raise EdgeYoloxError(f"{unit}: not installed")
    if args.root == "/":
        _systemctl("disable", "--now", f"{name}.service", dry_run=args.dry_run, check=False)
    else:
        _systemctl("disable", f"{name}.service", root=args.root, dry_run=args.dry_run, check=False)
    for path in (unit, root / "etc" / name / "config.yaml"):
        if args.dry_run:
            print(f"would remove {path}")
        elif path.exists():
            path.unlink()
            print(f"removed {path}")
    if not args.dry_run:
        with contextlib.suppress(OSError):  # only when empty: the user may keep their own files there
            (root / "etc" / name).rmdir()
    if args.root == "/":
        _systemctl("daemon-reload", dry_run=args.dry_run, check=False)
    print(f"kept /var/lib/{name} (saved MQTT messages, models): remove it yourself if unwanted")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    name = _check_name(args.name)
    if not Path("/run/systemd/system").is_dir():
        raise EdgeYoloxError("systemd is not running on this system: no service status to show")
    return _systemctl("status", "--no-pager", f"{name}.service", check=False)
