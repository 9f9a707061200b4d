"""Errors about the user's input. The CLI prints them as one clear line (exit code 2), no traceback.

Library code raises a subclass that names the capability; the message must say what is wrong,
with which file or argument, and what to do about it.
"""

from __future__ import annotations

import os
from pathlib import Path


class DormantError(Exception):
    """Base class of every error caused by bad input (files, arguments, models).

    ``exit_code`` is what the command exits with: 2 for bad input; subclasses for failures that
    are not the user's input (a built-in subject that failed its own checks) use 1.
    """

    exit_code = 2


class CheckpointError(DormantError):
    """A model folder or weight file that cannot be read (corrupt, truncated, missing shards, ...)."""


class ArchitectureMismatch(DormantError):
    """Two models that cannot be compared (different architectures, shapes, tokenizers)."""


class ChatTemplateError(DormantError):
    """A tokenizer without a usable chat template where one is required."""


class NetworkFileError(DormantError):
    """An opaque-network file that cannot be loaded (corrupt archive, unknown layout, ...)."""


class OutputFolderError(DormantError):
    """An output folder that cannot be created or written."""


def writable_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a folder that exists and takes a file: created when missing, tested with a file written
    and removed. Raises ``OutputFolderError`` naming ``option`` otherwise; commands call it before any
    work, so an unwritable folder costs nothing."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(f"the output folder {path} cannot be written ({exc.strerror or exc}); give a writable folder with {option}") from None
    return path
