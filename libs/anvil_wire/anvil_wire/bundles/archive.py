"""The bundle archive (section 3): ustar entries in two gzip members, written and read.

Headers are built by hand rather than with ``tarfile``: every header field but the name and
the size is a constant (section 3.3), and ``tarfile`` costs ~30 µs per entry, a third of the
time budget of a 10,000-object bundle. A test checks the bytes against ``tarfile``'s.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import BundleDigestMismatch, BundleMalformed, BundleTooLarge
from .inflate import BoundedStream
from .spec import MANIFEST_ENTRY, SEAL_ENTRY, VERSION_ENTRY, Limits

__all__ = [
    "END_OF_ARCHIVE",
    "Archive",
    "tar_entry",
    "gzip_member",
    "object_name",
    "read_first_entry",
    "read_archive",
]

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)
_ZERO_BLOCK = bytes(BLOCK)
# mode 0644, uid 0, gid 0 | mtime 0 | typeflag "0", no link name, POSIX magic and version,
# empty user and group names, empty device numbers (a regular file has none), no prefix: the
# bytes tarfile (Python >= 3.11.4) writes for the same entry in USTAR_FORMAT.
_MODE_UID_GID = b"0000644\x00" + b"0000000\x00" * 2
_MTIME = b"00000000000\x00"
_TAIL = b"0" + bytes(100) + b"ustar\x0000" + bytes(32 + 32 + 8 + 8 + 155 + 12)
_CHECKSUM_BASE = sum(_MODE_UID_GID) + sum(_MTIME) + sum(b" " * 8) + sum(_TAIL)
# gzip header: deflate, no flags (no file name), mtime 0, XFL 0 (level 6), OS 255 (unknown).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_OBJECT_RE = re.compile(r"objects/([0-9a-f]{64})\.json")
_OCTAL_RE = re.compile(rb" *([0-7]+)[ \x00]*")
_MAX_SIZE = 8**11 - 1  # what the 11 octal digits of a ustar size field hold
_MAX_VERSION_ENTRY = 64 * 1024
_TYPES = {
    b"1": "hard link",
    b"2": "symbolic link",
    b"3": "character device",
    b"4": "block device",
    b"5": "directory",
    b"6": "FIFO",
    b"7": "contiguous file",
    b"x": "pax extended header",
    b"g": "pax global header",
    b"L": "GNU long name",
    b"K": "GNU long link name",
}


def object_name(digest: str) -> str:
    """The entry name of the object whose digest is ``sha256:<hex>``."""
    return f"objects/{digest.removeprefix('sha256:')}.json"


def tar_entry(name: str, data: bytes) -> tuple[bytes, bytes, bytes]:
    """Header, data and padding of one deterministic ustar entry (section 3.3)."""
    raw_name = name.encode("ascii")
    if len(raw_name) > 100 or len(data) > _MAX_SIZE:
        raise ValueError(f"{name!r} ({len(data)} bytes) does not fit a ustar header")
    size = b"%011o\x00" % len(data)
    checksum = b"%06o\x00 " % (_CHECKSUM_BASE + sum(raw_name) + sum(size))
    header = b"".join((raw_name.ljust(100, b"\x00"), _MODE_UID_GID, size, _MTIME, checksum, _TAIL))
    return header, data, bytes(-len(data) % BLOCK)


def gzip_member(parts: Iterable[bytes]) -> bytes:
    """One gzip member of the concatenated ``parts``: level 6, mtime 0, no name, OS 255."""
    data = b"".join(parts)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY)
    body = deflate.compress(data) + deflate.flush()
    trailer = zlib.crc32(data).to_bytes(4, "little") + (len(data) & 0xFFFFFFFF).to_bytes(4, "little")
    return _GZIP_HEADER + body + trailer


@dataclass
class Archive:
    """The entries of a bundle, checked for names, order, types, limits and object digests."""

    version: bytes
    manifest: bytes | None = None
    objects: dict[str, bytes] = field(default_factory=dict)  # "sha256:<hex>" -> bytes
    seal: bytes | None = None


def _octal(field_: bytes, what: str) -> int:
    match = _OCTAL_RE.fullmatch(field_)
    if match is None:
        raise BundleMalformed(f"not a tar archive: bad {what} field {bytes(field_)!r} in an entry header")
    return int(match[1], 8)


def _header(block: bytes) -> tuple[str, int]:
    """Name and size of a regular-file ustar header; BundleMalformed for anything else."""
    if _octal(block[148:156], "checksum") != sum(block) - sum(block[148:156]) + 32 * 8:
        raise BundleMalformed("not a tar archive: an entry header has a bad checksum")
    if block[257:265] != b"ustar\x0000":
        raise BundleMalformed("not a POSIX ustar archive: an entry header has another magic (GNU or v7 tar?)")
    name, prefix = block[:100].split(b"\x00", 1)[0], block[345:500].split(b"\x00", 1)[0]
    text = (prefix + b"/" + name if prefix else name).decode("utf-8", "replace")
    kind = block[156:157]
    if kind not in (b"0", b"\x00"):
        what = _TYPES.get(kind, f"entry of type {kind!r}")
        raise BundleMalformed(f"entry {text!r} is a {what}; a bundle holds only regular files")
    return text, _octal(block[124:136], "size")


def _bad_name(name: str) -> BundleMalformed:
    if name.startswith("/"):
        why = "is an absolute path"
    elif ".." in name.split("/"):
        why = "climbs out of the archive with '..'"
    elif "\\" in name:
        why = "contains a backslash"
    elif name.startswith("objects/"):
        why = "is not objects/<64 lowercase hex digits>.json"
    else:
        why = "is not a bundle entry"
    return BundleMalformed(
        f"entry name {name!r} {why}; a bundle holds only {VERSION_ENTRY}, {MANIFEST_ENTRY}, "
        f"objects/<hex>.json and {SEAL_ENTRY}"
    )


def _rank(name: str) -> tuple[int, str]:
    """Position of a name in the entry order of section 3.1."""
    if name == VERSION_ENTRY:
        return (0, "")
    if name == MANIFEST_ENTRY:
        return (1, "")
    if match := _OBJECT_RE.fullmatch(name):
        return (2, match[1])
    if name == SEAL_ENTRY:
        return (3, "")
    raise _bad_name(name)


class _Entries:
    """Walks the entries of a bundle in order, enforcing section 3.2 as it goes."""

    def __init__(self, data: bytes, limits: Limits) -> None:
        self.stream = BoundedStream(data, limits)
        self._limits = limits
        self._count = 0
        self._last: tuple[int, str] | None = None
        self._last_name = ""
        self._seen: set[str] = set()

    def next(self) -> tuple[str, bytes] | None:
        """The next entry's name and data, or None at the end of the archive."""
        block = self.stream.read(BLOCK)
        if block == _ZERO_BLOCK:
            if self.stream.read(BLOCK) != _ZERO_BLOCK:
                raise BundleMalformed("not a tar archive: a zero block is not followed by a second one")
            return None
        name, size = _header(block)
        self._count += 1
        if self._count > self._limits.max_entries:
            raise BundleTooLarge(f"the bundle has more than {self._limits.max_entries} entries, the limit")
        self._check_order(name)
        padded = size + (-size % BLOCK)
        self.stream.check_total(self.stream.consumed + padded)  # refuse before inflating it
        data = self.stream.read(padded)[:size] if padded != size else self.stream.read(size)
        return name, data

    def _check_order(self, name: str) -> None:
        rank = _rank(name)
        last = self._last
        if last is None and rank[0] != 0:
            raise BundleMalformed(f"the first entry must be {VERSION_ENTRY}, not {name!r}")
        if name in self._seen:
            raise BundleMalformed(f"entry {name!r} appears twice")
        if last is not None and rank < last:
            raise BundleMalformed(
                f"entries out of order: {name!r} comes after {self._last_name!r} (section 3.1 fixes "
                f"the order: {VERSION_ENTRY}, {MANIFEST_ENTRY}, objects by ascending hex, {SEAL_ENTRY})"
            )
        self._last, self._last_name = rank, name
        self._seen.add(name)


def read_first_entry(data: bytes) -> bytes:
    """The content of ``anvil-bundle.json``, reading nothing after it (section 1)."""
    entries = _Entries(data, Limits())
    block = entries.stream.read(BLOCK)
    if block == _ZERO_BLOCK:
        raise BundleMalformed(f"the archive is empty; its first entry must be {VERSION_ENTRY}")
    name, size = _header(block)
    if name != VERSION_ENTRY:
        raise BundleMalformed(f"the first entry must be {VERSION_ENTRY}, not {name!r}")
    if size > _MAX_VERSION_ENTRY:
        raise BundleMalformed(f"{VERSION_ENTRY} is {size} bytes; it holds only a format and a version")
    return entries.stream.read(size)


def read_archive(data: bytes, limits: Limits) -> Archive:
    """Every entry of a bundle, with names, order, types, limits and object digests checked."""
    entries = _Entries(data, limits)
    first = entries.next()
    if first is None:
        raise BundleMalformed(f"the archive is empty; its first entry must be {VERSION_ENTRY}")
    archive = Archive(version=first[1])  # _check_order lets no other name come first
    while (entry := entries.next()) is not None:
        name, content = entry
        if name == MANIFEST_ENTRY:
            archive.manifest = content
        elif name == SEAL_ENTRY:
            archive.seal = content
        else:
            digest = "sha256:" + name[len("objects/") : -len(".json")]
            if "sha256:" + hashlib.sha256(content).hexdigest() != digest:
                raise BundleDigestMismatch(f"object {name!r} does not hash to its name: it was altered")
            archive.objects[digest] = content
    if not entries.stream.at_end():
        raise BundleMalformed("data follows the end of the archive")
    return archive
