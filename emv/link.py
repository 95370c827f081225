"""The `Link` seam: a card you can transceive with.

A terminal knows a card only through a link. Implementations live where their
I/O lives: the in-process reader in ``terminal/readers/local.py``, PC/SC and NFC
readers next to it, and the card side of virtual links in ``hce``. They all
speak whole APDUs (ISO/IEC 7816-4 §5.1): framing, chaining and GET RESPONSE
handling below the APDU level are the link's business.

A link that loses the card raises :class:`CardRemoved` (the tear a scenario can
inject, or a card leaving a real reader's field); any other failure of the
medium raises :class:`LinkError`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["CardRemoved", "Link", "LinkError"]


class LinkError(Exception):
    """The link failed: reader error, protocol error, time-out, mute card."""


class CardRemoved(LinkError):
    """The card left the field (or was never there) before the exchange completed."""


@runtime_checkable
class Link(Protocol):
    """A card in a field: power it, exchange APDUs, power it off."""

    def power_on(self) -> bytes:
        """Switch the field on and activate the card; returns its ATR (or ATS).

        Each power-on is a new tap: the card's volatile state starts afresh.
        """
        ...

    def power_off(self) -> None:
        """Switch the field off. Harmless when already off."""
        ...

    def transceive(self, command: bytes) -> bytes:
        """Send one command APDU and return the whole response APDU (data + SW1 SW2)."""
        ...
