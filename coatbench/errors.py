"""Errors that a user can cause and fix: the CLI turns them into one line and exit code 2."""


class CoatbenchError(Exception):
    """A problem with the user's input (model name, knob value, file), with its fix in the message."""
