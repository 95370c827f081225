"""Argument checks shared by the symmetric EMV crypto modules.

Each check raises ``ValueError`` whose message starts with the name of the
offending parameter, so a caller sees which argument was wrong and why.
"""


def require_length(name: str, value: bytes, *lengths: int) -> None:
    """Raise unless ``len(value)`` is one of ``lengths``."""
    if len(value) not in lengths:
        allowed = " or ".join(str(n) for n in lengths)
        unit = "byte" if lengths == (1,) else "bytes"
        raise ValueError(f"{name} must be {allowed} {unit} long, got {len(value)}")


def require_blocks(name: str, value: bytes, block_size: int) -> None:
    """Raise unless ``value`` is a whole number of ``block_size``-byte blocks."""
    if len(value) % block_size:
        raise ValueError(f"{name} must be a multiple of {block_size} bytes long, got {len(value)}")


def require_digits(
    name: str, value: str, shortest: int, longest: int, *, secret: bool = False
) -> None:
    """Raise unless ``value`` is ``shortest`` to ``longest`` decimal digits. A ``secret``
    value (a PIN, a PAN) is never echoed in the message."""
    if not (value.isascii() and value.isdigit()):
        shown = "" if secret else f", got {value!r}"
        raise ValueError(f"{name} must contain decimal digits only{shown}")
    if not shortest <= len(value) <= longest:
        raise ValueError(f"{name} must be {shortest} to {longest} digits long, got {len(value)}")
