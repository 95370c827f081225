"""Readers: the terminal's side of a :class:`emv.link.Link` (DESIGN.md, "Links";
docs/links.md).

* :mod:`terminal.readers.vpcd`: a vpcd-protocol reader (vsmartcard's virtual
  reader, TCP) that an emulated card connects to (``emvtap ... --link vpcd-direct``).
* :mod:`terminal.readers.pcsc`: a PC/SC reader through pyscard (``--link pcsc``,
  ``emvtap tap --reader NAME``); pyscard is imported on first use.
* :mod:`terminal.readers.nfc`: an NFC reader through nfcpy (``--link nfc-udp``,
  ``emvtap tap --reader nfc:usb``); import it only where nfcpy is installed.
"""

from terminal.readers.pcsc import PcscReader, list_readers
from terminal.readers.vpcd import VpcdReader

__all__ = ["PcscReader", "VpcdReader", "list_readers"]
