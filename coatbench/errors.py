"""Errors that a user can cause and fix: the CLI turns each into one line and its exit code."""

from __future__ import annotations

from pathlib import Path


class CoatbenchError(Exception):
    """A problem with the user's input (model name, knob value, file), with its fix in the message."""

    exit_code = 2


class NothingToReport(CoatbenchError):
    """The input holds nothing to report or compare: exit 3, as `compare` with nothing comparable."""

    exit_code = 3


class OutputFailed(CoatbenchError):
    """stdout cannot be written (a full disk, a closed terminal): what was measured is saved already."""


class ReaderGone(CoatbenchError):
    """stdout's reader closed the pipe (`coatbench compare ... | head`): not a fault of the command,
    so nothing is said, and the exit code is 141, as for a process that SIGPIPE ended."""

    exit_code = 128 + 13


class Stopped(CoatbenchError):
    """Ctrl-C (or SIGTERM, SIGHUP) outside a sweep, or during `ab`: nothing was left half done."""

    exit_code = 130


class Interrupted(Stopped):
    """Ctrl-C (or SIGTERM, SIGHUP) during a sweep: what was measured is saved in `out`, and
    `--resume out` goes on."""

    def __init__(self, message: str, out: Path):
        super().__init__(message)
        self.out = out
