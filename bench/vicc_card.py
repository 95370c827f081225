"""vsmartcard's own virtual card for the PC/SC benchmark (:mod:`bench.links`).

Run with the interpreter of Debian's ``vicc`` (``/usr/bin/python3``, not the venv):
``vicc_card.py HOST PORT [--quickack]``. It is ``vicc -t iso7816 -H HOST -P PORT``
(vsmartcard's ``VirtualICC`` with its ISO 7816 card and file system, unchanged) with a
DF named ``2PAY.SYS.DDF01`` added to the card's MF, so that the SELECT PPSE the
benchmark sends is answered with a file control information and '9000', as emvtap's
card answers it. Three things make the Debian 12 package (vsmartcard-vpicc 3.3,
vicc 0.8) run at all, and are done here only when needed:

* the package installs its modules one folder too deep
  (``/usr/lib/python3/site-packages/virtualsmartcard/virtualsmartcard``, on no
  ``sys.path``): that folder's parent is put on the path;
* ``virtualsmartcard.CryptoUtils`` imports PyCrypto (``Crypto``) at load, which Debian
  12 does not ship (its pycryptodome is ``Cryptodome``): stand-ins are put in
  ``sys.modules``; the ISO 7816 card's SELECT never ciphers or hashes;
* ``TLVutils.pack`` ends with ``b"".join(result)`` on ``bytes`` (a Python 2 leftover that
  raises TypeError on Python 3, so every SELECT asking for an FCI kills vicc): its own
  source is compiled again with ``return result``.

``--quickack`` sets TCP_NODELAY and re-arms TCP_QUICKACK before every ``recv`` on vicc's
socket, as :class:`hce.card.vpcd.VpcdCard` does: without it, each APDU waits for a
delayed acknowledgement (about 40 ms on Linux), and the figure measures that, not vicc.
"""

import importlib
import importlib.util
import inspect
import logging
import socket
import sys
import types

DEBIAN_FOLDER = "/usr/lib/python3/site-packages/virtualsmartcard"


def _importable() -> None:
    if importlib.util.find_spec("virtualsmartcard") is None:
        sys.path.insert(0, DEBIAN_FOLDER)
    if importlib.util.find_spec("Crypto") is None:
        crypto = types.ModuleType("Crypto")
        for name, attributes in (
            ("Cipher", ("DES3", "DES", "AES", "ARC4")),
            ("Hash", ("HMAC", "SHA", "MD5")),
        ):
            module = types.ModuleType(f"Crypto.{name}")
            for attribute in attributes:
                setattr(module, attribute, None)
            setattr(crypto, name, module)
            sys.modules[module.__name__] = module
        sys.modules["Crypto"] = crypto


def _fix_pack() -> None:
    tlv = importlib.import_module("virtualsmartcard.TLVutils")
    source = inspect.getsource(tlv.pack)
    broken = 'return b"".join(result)'
    if broken in source:
        exec(source.replace(broken, "return result"), tlv.__dict__)


class _QuickAck:
    """vicc's socket, with TCP_QUICKACK re-armed before every ``recv``."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def recv(self, size: int) -> bytes:
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    _importable()
    _fix_pack()
    smartcard = importlib.import_module("virtualsmartcard.VirtualSmartcard")
    filesystem = importlib.import_module("virtualsmartcard.SmartcardFilesystem")
    vicc = smartcard.VirtualICC(None, "iso7816", host, port, logginglevel=logging.CRITICAL)
    mf = vicc.os.mf
    mf.append(filesystem.DF(parent=mf, fid=0x0101, dfname=b"2PAY.SYS.DDF01"))
    if "--quickack" in sys.argv[3:]:
        vicc.sock = _QuickAck(vicc.sock)
    print("ready", flush=True)
    vicc.run()


if __name__ == "__main__":
    main()
