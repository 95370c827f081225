"""BER-TLV as EMV uses it (EMV 4.4 Book 3, Annex B).

A data object is a tag, a length and a value (Annex B1-B3):

* the tag is one or more bytes; when the low five bits of the first byte are all
  set, further bytes follow for as long as their bit 8 is set (B1);
* bit 6 of the first tag byte marks a *constructed* object whose value is itself
  a sequence of data objects (a template), otherwise it is *primitive*;
* the length is one byte below 0x80, else 0x81..0x84 followed by one to four
  length bytes (B2);
* '00' bytes may stand before, between and after objects as padding (B1), and
  so may 'FF' on the card interface (ISO/IEC 7816-4 §5.2.2.1 treats both as
  non-tags). Kernel-internal data of EMV Contactless Book C-2 does use tags
  starting 'FF' (Torn Record 'FF8101', Data Record 'FF8105'...): decode such
  data with ``ff_padding=False``.

Tags are plain ints (``0x9F02``). Objects are :class:`Tlv` values (treat them as
immutable: they are shared between parses and traces); a sequence of them keeps
duplicates in their original order.

Decoding is strict by default: every malformed input raises one
:class:`TlvError` naming the offset and the problem. ``strict=False`` is the
lenient mode for real-world cards: a length that runs past the end of its
enclosing data is clipped to what is there, and bytes that do not form an
object (at the end of the input or of a template) are dropped; it never raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = [
    "Tlv",
    "TlvError",
    "decode",
    "encode",
    "encode_length",
    "encode_primitive",
    "find",
    "find_all",
    "index",
    "is_constructed",
    "parse_tag",
    "read_tag",
    "tag_bytes",
    "tag_hex",
]

MAX_TAG_BYTES = 4
MAX_LENGTH_BYTES = 4
MAX_DEPTH = 32
_CONSTRUCTED = 0x20  # bit 6 of the first tag byte (Annex B1, Table 35)
_CHECKED_TAGS = 1024  # well-formed tags remembered for the objects built in code
_PADDING = (0x00, 0xFF)
_PADDING_ZEROS_ONLY = (0x00,)


class TlvError(ValueError):
    """Malformed BER-TLV: says where (byte offset in the outermost input) and what."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"TLV error at offset {offset}: {problem}")
        self.offset = offset
        self.problem = problem


def tag_bytes(tag: int) -> bytes:
    """The tag's encoding: its int value as big-endian bytes (Annex B1)."""
    if tag <= 0:
        raise ValueError(f"tag must be a positive int, got {tag}")
    return tag.to_bytes((tag.bit_length() + 7) // 8, "big")


def tag_hex(tag: int) -> str:
    """The tag as EMV documents write it, e.g. ``9F02``."""
    return tag_bytes(tag).hex().upper()


def parse_tag(text: str) -> int:
    """A tag written in hex (``"9F02"``, ``"9f 02"``) as an int, checked to be well formed."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"tag {text!r} is not hex") from None
    if not raw:
        raise ValueError("tag is empty")
    tag, end = _read_tag(raw, 0, len(raw))
    if end != len(raw):
        raise ValueError(f"tag {text!r} has {len(raw) - end} byte(s) after the tag ends")
    return tag


@lru_cache(maxsize=_CHECKED_TAGS)
def _checked_tag_bytes(tag: int) -> bytes:
    """The encoding of a well-formed tag; ValueError for an int that is not one (e.g. a
    first byte 00 or FF). Cached: every object built in code checks its tag, and a tap
    builds a few dozen objects from a handful of tags."""
    raw = tag_bytes(tag)
    try:
        _, end = _read_tag(raw, 0, len(raw))
    except TlvError as err:
        raise ValueError(f"{tag_hex(tag)} is not a valid tag: {err.problem}") from None
    if end != len(raw):
        raise ValueError(f"{tag_hex(tag)} is not a valid tag: it ends after {end} byte(s)")
    return raw


def read_tag(data: bytes, pos: int = 0) -> tuple[int, int]:
    """The tag that starts at ``pos`` in ``data`` and the offset just after it (Annex B1).

    Raises :class:`TlvError` naming the offset when no well-formed tag starts there.
    """
    if pos >= len(data):
        raise TlvError(pos, "expected a tag, found the end of data")
    return _read_tag(data, pos, len(data))


def is_constructed(tag: int) -> bool:
    """Bit 6 of the first tag byte: the value is itself TLV (Annex B1, Table 35)."""
    return bool(tag_bytes(tag)[0] & _CONSTRUCTED)


def encode_length(length: int) -> bytes:
    """The shortest length field for ``length`` (Annex B2): 1 byte, or 0x8N + N bytes."""
    if length < 0:
        raise ValueError(f"length must not be negative, got {length}")
    if length < 0x80:
        return bytes((length,))
    size = (length.bit_length() + 7) // 8
    if size > MAX_LENGTH_BYTES:
        raise ValueError(f"length {length} needs more than {MAX_LENGTH_BYTES} length bytes")
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


@dataclass(slots=True)
class Tlv:
    """One data object.

    ``children`` is None for primitive objects and the parsed content for
    templates; ``value`` is always the raw value bytes. ``offset`` is where the
    tag started in the decoded input (0 for objects built in code) and takes no
    part in equality.
    """

    tag: int
    value: bytes
    children: tuple[Tlv, ...] | None = None
    offset: int = field(default=0, compare=False)

    @classmethod
    def primitive(cls, tag: int, value: bytes) -> Tlv:
        _primitive_tag_bytes(tag)
        return cls(tag, bytes(value))

    @classmethod
    def template(cls, tag: int, *children: Tlv) -> Tlv:
        if not _checked_tag_bytes(tag)[0] & _CONSTRUCTED:
            raise ValueError(f"tag {tag_hex(tag)} is primitive; use Tlv.primitive")
        return cls(tag, encode(children), children)

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def to_bytes(self) -> bytes:
        """Tag, shortest length, value."""
        length = len(self.value)
        if length < 0x80:  # the common one-byte length, inline
            return tag_bytes(self.tag) + bytes((length,)) + self.value
        return tag_bytes(self.tag) + encode_length(length) + self.value

    def walk(self) -> Iterator[tuple[int, Tlv]]:
        """This object and everything inside it, depth first, with nesting depth."""
        pending = [(0, self)]  # a stack: one generator however deep the templates go
        while pending:
            depth, obj = pending.pop()
            yield depth, obj
            if obj.children:
                pending.extend((depth + 1, child) for child in reversed(obj.children))


def _primitive_tag_bytes(tag: int) -> bytes:
    """The encoding of a well-formed primitive tag; ValueError for any other int."""
    raw = _checked_tag_bytes(tag)
    if raw[0] & _CONSTRUCTED:
        raise ValueError(f"tag {tag_hex(tag)} is constructed; use Tlv.template")
    return raw


def encode(objects: Iterable[Tlv]) -> bytes:
    """Concatenate the encodings of ``objects`` (no padding)."""
    return b"".join(obj.to_bytes() for obj in objects)


def encode_primitive(tag: int, value: bytes) -> bytes:
    """Tag, shortest length, value (Annex B1-B2): what ``Tlv.primitive(tag,
    value).to_bytes()`` gives, without making the object (for data encoded and sent,
    never read back, such as the ICC data for the host)."""
    return _primitive_tag_bytes(tag) + encode_length(len(value)) + bytes(value)


def decode(
    data: bytes | bytearray | memoryview, *, strict: bool = True, ff_padding: bool = True
) -> list[Tlv]:
    """Parse a sequence of data objects, recursing into templates (Annex B).

    Padding bytes '00' and 'FF' between objects are skipped ('00' only with
    ``ff_padding=False``, for kernel data with 'FF..' tags). In strict mode any
    malformation raises :class:`TlvError`; see the module docstring for what the
    lenient mode (``strict=False``) tolerates.
    """
    padding = _PADDING if ff_padding else _PADDING_ZEROS_ONLY
    return _Decoder(bytes(data), strict, padding).sequence(0, len(data), 0)


def find(objects: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first object with ``tag``, searching depth first into templates."""
    return next(find_all(objects, tag), None)


def find_all(objects: Iterable[Tlv], tag: int) -> Iterator[Tlv]:
    """Every object with ``tag`` in document order, searching into templates."""
    for top in objects:
        for _, obj in top.walk():
            if obj.tag == tag:
                yield obj


def index(objects: Iterable[Tlv]) -> dict[int, bytes]:
    """Primitive values by tag, descending into templates; the first occurrence wins."""
    found: dict[int, bytes] = {}
    for top in objects:
        for _, obj in top.walk():
            if obj.children is None:
                found.setdefault(obj.tag, obj.value)
    return found


# --- decoding internals -------------------------------------------------------------------


class _Decoder:
    """One decoding run over ``data``: the rules stay fixed, positions move."""

    __slots__ = ("data", "padding", "strict")

    def __init__(self, data: bytes, strict: bool, padding: tuple[int, ...]) -> None:
        self.data = data
        self.strict = strict
        self.padding = padding

    def sequence(self, start: int, end: int, depth: int) -> list[Tlv]:
        """The objects between ``start`` and ``end``, skipping padding.

        Each object is read inline (a tap decodes about a hundred): the tag, its
        length, its value and, for a template, its children by recursion. A malformed
        object ends the sequence: an error in strict mode, else the bytes from there
        on are dropped."""
        data, padding, strict = self.data, self.padding, self.strict
        objects: list[Tlv] = []
        append = objects.append
        pos = start
        while pos < end:
            first = data[pos]
            if first in padding:
                pos += 1
                continue
            tag_start = pos
            try:
                if first & 0x1F != 0x1F:  # one-byte tag, inline
                    tag, pos = first, pos + 1
                elif pos + 1 < end and 0 < data[pos + 1] < 0x80:  # two-byte tag, inline
                    tag, pos = (first << 8) | data[pos + 1], pos + 2
                else:
                    tag, pos = _read_tag(data, pos, end)
                if pos < end and data[pos] < 0x80:  # the common one-byte length, inline
                    length, pos = data[pos], pos + 1
                else:
                    length, pos = _read_length(data, pos, end, tag)
                value_end = pos + length
                if value_end > end:
                    if strict:
                        problem = f"declares length {length} but only {end - pos} byte(s) remain"
                        raise TlvError(tag_start, f"tag {tag_hex(tag)} {problem}")
                    value_end = end
                children: tuple[Tlv, ...] | None = None
                if first & _CONSTRUCTED:
                    children = self.template(tag, tag_start, pos, value_end, depth)
            except TlvError:
                if strict:
                    raise
                break  # lenient: trailing bytes that are not an object are dropped
            append(Tlv(tag, data[pos:value_end], children, tag_start))
            pos = value_end
        return objects

    def template(
        self, tag: int, tag_start: int, start: int, end: int, depth: int
    ) -> tuple[Tlv, ...]:
        """The children of the template ``tag`` (at ``tag_start``); errors inside name it."""
        if depth >= MAX_DEPTH:
            raise TlvError(tag_start, f"templates nested more than {MAX_DEPTH} deep")
        try:
            return tuple(self.sequence(start, end, depth + 1))
        except TlvError as err:
            raise TlvError(err.offset, f"{err.problem} (in template {tag_hex(tag)})") from None


def _read_tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    start = pos
    first = data[pos]
    if first == 0x00:
        raise TlvError(pos, "byte 00 is padding, not a tag")
    tag = first
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= end:
                raise TlvError(start, f"tag starting {first:02X} is cut off by the end of data")
            byte = data[pos]
            if pos == start + 1 and byte == 0x80:
                raise TlvError(pos, "tag continuation byte 80 encodes a leading zero")
            tag = (tag << 8) | byte
            pos += 1
            if not byte & 0x80:
                break
            if pos - start >= MAX_TAG_BYTES:
                raise TlvError(start, f"tag is longer than {MAX_TAG_BYTES} bytes")
    return tag, pos


def _read_length(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    if pos >= end:
        raise TlvError(pos, f"tag {tag_hex(tag)} has no length field")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    size = first & 0x7F
    if size == 0:
        raise TlvError(pos, f"tag {tag_hex(tag)}: indefinite length (80) is not allowed in EMV")
    if size > MAX_LENGTH_BYTES:
        raise TlvError(pos, f"tag {tag_hex(tag)}: length field {first:02X} announces {size} bytes")
    if pos + 1 + size > end:
        raise TlvError(pos, f"tag {tag_hex(tag)}: length field is cut off by the end of data")
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size
