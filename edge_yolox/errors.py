"""Errors a user can cause. The CLI prints them as one line and exits non-zero, never with a traceback."""


class EdgeYoloxError(Exception):
    """A problem with the user's input, config, model, camera or environment; the message says which."""


class ConfigError(EdgeYoloxError):
    """A bad configuration value: the message names the file, the key and what is allowed."""


class ModelError(EdgeYoloxError):
    """A model file that is missing, corrupt, truncated or does not fit what was asked."""


class SourceError(EdgeYoloxError):
    """A frame source that cannot be opened (missing camera, unreadable file, bad URL)."""


def one_line(exc: BaseException) -> str:
    """The message as the single stderr line the CLI promises (parsers' messages may span lines)."""
    return " ".join(str(exc).split())


def reason(exc: BaseException, limit: int = 200) -> str:
    """What a third-party exception says, for one of our one-line errors: its first line (its type when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def redact(url: str) -> str:
    """`url` fit for a message or a log: whatever lies between the first ':' after the scheme and the last '@'
    (where a password is, however malformed the rest) becomes ***. May hide a port too, never shows a password."""
    at = url.rfind("@")
    scheme_end = url.find("://", 0, max(at, 0))
    colon = url.find(":", scheme_end + 3 if scheme_end >= 0 else 0, max(at, 0))
    return url if colon < 0 else f"{url[:colon + 1]}***{url[at:]}"
