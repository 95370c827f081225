"""Readers: the terminal's side of a :class:`emv.link.Link` (DESIGN.md, "Links").

* :mod:`terminal.readers.vpcd`: a vpcd-protocol reader (vsmartcard's virtual
  reader, TCP) that an emulated card connects to (``emvtap ... --link vpcd-direct``).
"""

from terminal.readers.vpcd import VpcdReader

__all__ = ["VpcdReader"]
