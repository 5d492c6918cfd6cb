"""The project's error types.

Every error a user can cause is an ``MMVGMError``: the CLI prints it as one line
(``mmvgm: error: <path>: <reason>``) and exits with ``exit_code``, never a traceback.
"""
from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


class MMVGMError(Exception):
    """Base class; ``path`` (optional) names the file or directory the error is about."""

    exit_code = 1

    def __init__(self, message: str, path: Optional[PathLike] = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else os.fspath(path)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InputError(MMVGMError):
    """Bad user input: a missing path, an unsupported file, an invalid argument value."""


class DecodeError(InputError):
    """A media file exists but cannot be decoded (corrupt, truncated, not media)."""


class LimitError(InputError):
    """A file exceeds a configured budget (pixels per frame, number of frames)."""


class ConfigError(MMVGMError):
    """A configuration file or override is invalid (unknown key, wrong type, missing value)."""


class CheckpointError(MMVGMError):
    """A checkpoint or pretrained-weights path is missing, incomplete or incompatible."""


class DependencyError(MMVGMError):
    """An optional dependency (an extra) is needed but not installed."""
