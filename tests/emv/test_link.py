"""emv.link.udp_address: nfcpy udp device paths."""

from __future__ import annotations

import pytest

from emv.link import NFCPY_UDP_DEFAULT, udp_address


@pytest.mark.parametrize(
    ("path", "address"),
    [
        ("udp", NFCPY_UDP_DEFAULT),
        ("udp:127.0.0.1", ("127.0.0.1", NFCPY_UDP_DEFAULT[1])),
        ("udp:127.0.0.1:9", ("127.0.0.1", 9)),
        ("udp::4000", (NFCPY_UDP_DEFAULT[0], 4000)),
        ("usb", None),
        ("usb:054c:06c3", None),
        ("udpx:1:2", None),
    ],
)
def test_paths(path: str, address: tuple[str, int] | None) -> None:
    assert udp_address(path) == address


def test_port_zero_only_for_the_side_that_listens() -> None:
    assert udp_address("udp:127.0.0.1:0", any_port=True) == ("127.0.0.1", 0)
    with pytest.raises(ValueError, match="port 0 is not 1 to 65535"):
        udp_address("udp:127.0.0.1:0")


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("udp:h:p", "the port is not a number"),
        ("udp:h:-1", "the port is not a number"),
        ("udp:h:65536", "port 65536 is not 1 to 65535"),
        ("udp:h:1:2", "expected udp:HOST:PORT"),
    ],
)
def test_bad_paths_say_why(path: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"{path}: {problem}"):
        udp_address(path)
