"""What emvtap is: its installed version, for ``--version`` and the API description."""

from __future__ import annotations

from importlib import metadata

__all__ = ["version"]


def version() -> str:
    """The installed distribution's version, or a marker when running from a bare tree."""
    try:
        return metadata.version("emvtap")
    except metadata.PackageNotFoundError:
        return "0+unknown"
