"""Bounded, incremental gzip inflation of a bundle held in memory (section 3.2).

Output is produced in chunks of at most ``_OUT_CHUNK`` bytes and counted as it is made, so a
decompression bomb is refused when it passes the limit, never after it has been inflated.
"""

from __future__ import annotations

import zlib

from .errors import BundleMalformed, BundleTooLarge
from .spec import Limits

__all__ = ["BoundedStream"]

_IN_CHUNK = 64 * 1024
_OUT_CHUNK = 256 * 1024
_GZIP = 16 + zlib.MAX_WBITS
_COMPACT_AT = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


def _mib(size: int) -> str:
    mib, rest = divmod(size, 1024 * 1024)
    return f"{mib} MiB" if mib and not rest else f"{size} bytes"


class BoundedStream:
    """The inflated bytes of concatenated gzip members, read front to back within ``limits``."""

    def __init__(self, data: bytes, limits: Limits) -> None:
        self._data = memoryview(data)
        self._limits = limits
        self._fed = 0  # bytes of ``data`` handed to the current inflater so far
        self._inflater = zlib.decompressobj(_GZIP)
        self._members = 1
        self._member_start = 0  # offset in ``data`` of the current member
        self._buffer = bytearray()
        self._offset = 0  # read position in ``_buffer``
        self.inflated = 0  # bytes inflated so far, read or not

    @property
    def consumed(self) -> int:
        """Bytes handed out by ``read``."""
        return self.inflated - (len(self._buffer) - self._offset)

    def check_total(self, total: int) -> None:
        """Refuse when inflating ``total`` bytes in all would pass a limit."""
        limits = self._limits
        if total > limits.max_uncompressed:
            raise BundleTooLarge(
                f"the bundle inflates to more than {_mib(limits.max_uncompressed)}, the limit"
            )
        if total > limits.max_ratio * len(self._data):
            raise BundleTooLarge(
                f"the bundle inflates to more than {limits.max_ratio} times its compressed size of "
                f"{len(self._data)} bytes; refused as a possible decompression bomb"
            )

    def read(self, size: int) -> bytes:
        """The next ``size`` inflated bytes; BundleMalformed if the archive ends before."""
        while len(self._buffer) - self._offset < size:
            chunk = self._inflate()
            if not chunk:
                raise BundleMalformed("the archive is truncated: it ends in the middle of an entry")
            if self._offset > _COMPACT_AT:
                del self._buffer[: self._offset]
                self._offset = 0
            self._buffer += chunk
        start = self._offset
        self._offset += size
        return bytes(self._buffer[start : self._offset])

    def at_end(self) -> bool:
        """True when every byte has been read and the compressed data is used up."""
        return self._offset == len(self._buffer) and not self._inflate(peek=True)

    def _inflate(self, *, peek: bool = False) -> bytes:
        """The next chunk of output, b"" after the last member; bounded by the limits."""
        while True:
            inflater = self._inflater
            if inflater.eof and not self._next_member():
                return b""
            inflater = self._inflater
            if inflater.unconsumed_tail:
                source: bytes | memoryview = inflater.unconsumed_tail
            else:
                source = self._data[self._fed : self._fed + _IN_CHUNK]
                self._fed += len(source)
            try:
                out = inflater.decompress(source, 1 if peek else _OUT_CHUNK)
            except zlib.error as exc:
                raise BundleMalformed(self._zlib_message(exc)) from exc
            if out:
                self.inflated += len(out)
                self.check_total(self.inflated)
                if peek:
                    self._buffer += out
                return out
            if not source and not inflater.eof:
                raise BundleMalformed("the archive is truncated: the gzip stream ends early")

    def _next_member(self) -> bool:
        """Start the gzip member that follows the finished one; False at the end of the data."""
        end = self._fed - len(self._inflater.unused_data)
        if end >= len(self._data):
            return False
        self._fed = self._member_start = end
        self._inflater = zlib.decompressobj(_GZIP)
        self._members += 1
        return True

    def _zlib_message(self, exc: zlib.error) -> str:
        if self._data[self._member_start : self._member_start + 2] != _GZIP_MAGIC:
            if self._members == 1:
                return f"not a bundle: the file is not gzip-compressed ({exc})"
            return f"the data after gzip member {self._members - 1} is not gzip ({exc})"
        return f"the gzip stream is corrupt: gzip member {self._members} ({exc})"
