"""Errors that a user can cause and fix: the CLI turns each into one line and its exit code."""

from __future__ import annotations

from pathlib import Path


class CoatbenchError(Exception):
    """A problem with the user's input (model name, knob value, file), with its fix in the message."""

    exit_code = 2


class Interrupted(CoatbenchError):
    """Ctrl-C during a sweep: what was measured is saved in `out`, and `--resume out` goes on."""

    exit_code = 130

    def __init__(self, message: str, out: Path):
        super().__init__(message)
        self.out = out
