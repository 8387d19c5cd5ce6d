"""Errors raised for bad user input: each names the file, line and field at fault."""

from __future__ import annotations


class DataError(ValueError):
    """A user's data file is malformed. Carries where, so the message points at the fix."""

    def __init__(self, path: str, message: str, line: int | None = None, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        where = self.path if line is None else f"{self.path}:{line}"
        if field is not None:
            where += f" field '{field}'"
        super().__init__(f"{where}: {message}")


class ConfigError(ValueError):
    """Options that contradict each other or the data; raised before any training starts."""


class StageFailed(RuntimeError):
    """A pipeline stage (a subprocess) exited with an error; its own log says why."""
