"""Replacing a file so that a crash leaves the old one or the new one, never a torn one.

The HSM's key file and the phone's wallet file depend on it, and so does a plastic
card's counter file when it is made (:class:`hce.card.keys.FileCounterStore`): a
temporary file beside the target (created 0600), written and fsynced, renamed over
the target, then the directory fsynced so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["replace_atomically"]


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (file mode 0600)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
