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

__all__ = ["NFCPY_UDP_DEFAULT", "CardRemoved", "Link", "LinkError", "udp_address"]


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


NFCPY_UDP_DEFAULT = ("localhost", 54321)
"""Where nfcpy's ``udp`` driver goes when its path names no host or port."""


def udp_address(device: str, *, any_port: bool = False) -> tuple[str, int] | None:
    """HOST and PORT of an nfcpy ``udp[:HOST][:PORT]`` device path (nfcpy's simulated RF
    link); None when ``device`` is another kind of path. Port 0 (a free one) only with
    ``any_port`` (the side that listens); a bad path is a :class:`ValueError` saying why."""
    if device != "udp" and not device.startswith("udp:"):
        return None
    parts = device.split(":")
    if len(parts) > 3:
        raise ValueError(f"{device}: expected udp:HOST:PORT")
    host = parts[1] if len(parts) > 1 and parts[1] else NFCPY_UDP_DEFAULT[0]
    port_text = parts[2] if len(parts) > 2 and parts[2] else str(NFCPY_UDP_DEFAULT[1])
    if not port_text.isdigit():
        raise ValueError(f"{device}: the port is not a number")
    port, lowest = int(port_text), 0 if any_port else 1
    if not lowest <= port <= 0xFFFF:
        raise ValueError(f"{device}: port {port} is not {lowest} to 65535")
    return host, port
