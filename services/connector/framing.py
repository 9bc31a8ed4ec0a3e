"""4-byte big-endian length framing of serialized ProtoMessage envelopes (pure)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

HEADER = struct.Struct(">I")
MAX_FRAME = 4 * 1024 * 1024  # far above any Open API message; guards against a corrupt length


class FrameError(ValueError):
    pass


def encode_frame(body: bytes) -> bytes:
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


@dataclass
class FrameDecoder:
    """Accumulates bytes and yields complete frame bodies in order."""

    max_frame: int = MAX_FRAME
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        self._buf.extend(data)
        out: list[bytes] = []
        while len(self._buf) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buf, 0)
            if length > self.max_frame:
                raise FrameError(f"frame length {length} exceeds {self.max_frame}")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            out.append(bytes(self._buf[HEADER.size : end]))
            del self._buf[:end]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
