"""Command-line parsing shared by every `edge-yolox` command: one-line errors and checked numbers."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, NoReturn, Optional


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line on stderr and exit 2, like every other user error of edge-yolox
    (argparse's default adds the usage block). Subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def number(kind: type = float, lo: Optional[float] = None, hi: Optional[float] = None) -> Callable[[str], float]:
    """An argparse `type` for a finite int/float in [lo, hi] (argparse's own float() accepts 'nan')."""
    allowed = "an integer" if kind is int else "a number"
    allowed += f" {lo:g} to {hi:g}" if hi is not None else f" >= {lo:g}" if lo is not None else ""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}; allowed: {allowed}") from None
        if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}; allowed: {allowed}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


fraction = number(float, 0.0, 1.0)
