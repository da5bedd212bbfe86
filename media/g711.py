"""G.711 mu-law and A-law codecs with numpy lookup tables (audioop is deprecated).

The encoders index a 65,536-entry table by the int16 sample viewed as uint16; the decoders index a
256-entry table by the code byte. Both are built once at import and are read-only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PCMU = "PCMU"
PCMA = "PCMA"

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # 14-bit magnitude limit after the >> 2 (Sun g711.c)
_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    v = pcm >> 2
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, v, side="left")
    segc = np.minimum(seg, 7)
    uval = (segc << 4) | ((v >> (segc + 1)) & 0xF)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = ((u & 0x0F) << 3) + _ULAW_BIAS
    t = t << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    v = pcm >> 3
    mask = np.where(v >= 0, 0xD5, 0x55)
    v = np.where(v >= 0, v, -v - 1)
    seg = np.searchsorted(_SEG_AEND, v, side="left")
    segc = np.minimum(seg, 7)
    aval = segc << 4
    aval = aval | np.where(segc < 2, (v >> 1) & 0xF, (v >> np.maximum(segc, 1)) & 0xF)
    aval = np.where(seg >= 8, 0x7F, aval)
    return (aval ^ mask).astype(np.uint8)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _frozen(a: npt.NDArray) -> npt.NDArray:  # type: ignore[type-arg]
    a.flags.writeable = False
    return a


ULAW_ENCODE: npt.NDArray[np.uint8] = _frozen(_build_ulaw_encode())
ULAW_DECODE: npt.NDArray[np.int16] = _frozen(_build_ulaw_decode())
ALAW_ENCODE: npt.NDArray[np.uint8] = _frozen(_build_alaw_encode())
ALAW_DECODE: npt.NDArray[np.int16] = _frozen(_build_alaw_decode())

# bytes.translate tables: re-encode a relayed payload between the laws without leaving C.
ULAW_TO_ALAW: bytes = ALAW_ENCODE[ULAW_DECODE.view(np.uint16)].tobytes()
ALAW_TO_ULAW: bytes = ULAW_ENCODE[ALAW_DECODE.view(np.uint16)].tobytes()

# The code of digital silence in each law (used for comfort padding and hold).
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 linear samples to mu-law bytes."""
    return ULAW_ENCODE[np.asarray(pcm, dtype=np.int16).view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """Decode mu-law bytes to int16 linear samples."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 linear samples to A-law bytes."""
    return ALAW_ENCODE[np.asarray(pcm, dtype=np.int16).view(np.uint16)].tobytes()


def alaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """Decode A-law bytes to int16 linear samples."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def encode(codec: str, pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode with the named codec ("PCMU" or "PCMA")."""
    if codec == PCMU:
        return ulaw_encode(pcm)
    if codec == PCMA:
        return alaw_encode(pcm)
    raise ValueError(f"unsupported codec {codec!r}")


def decode(codec: str, data: bytes) -> npt.NDArray[np.int16]:
    """Decode with the named codec ("PCMU" or "PCMA")."""
    if codec == PCMU:
        return ulaw_decode(data)
    if codec == PCMA:
        return alaw_decode(data)
    raise ValueError(f"unsupported codec {codec!r}")


def silence(codec: str, samples: int) -> bytes:
    """`samples` bytes of digital silence in the codec."""
    return bytes([ULAW_SILENCE if codec == PCMU else ALAW_SILENCE]) * samples
