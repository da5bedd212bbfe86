"""Audio helpers, sans-IO except the explicit file functions: WAV read/write, resampling, conversion.

Telephony audio inside the media layer is always 8 kHz mono int16 ("linear").
"""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media import g711

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz

_FMT_PCM = 1
_FMT_FLOAT = 3
_FMT_ALAW = 6
_FMT_ULAW = 7
_FMT_EXTENSIBLE = 0xFFFE


class WavError(ValueError):
    """A file that is not a WAV file we can read."""


@dataclass(frozen=True, slots=True)
class Audio:
    """Decoded audio: float64 samples in [-1, 1) shaped (frames, channels), and the sample rate."""

    samples: npt.NDArray[np.float64]
    rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.rate


def parse_wav(data: bytes) -> Audio:
    """Decode a RIFF/WAVE file: PCM 8/16/24/32-bit, IEEE float 32/64, A-law, mu-law, extensible."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    off = 12
    fmt: tuple[int, int, int, int, int] | None = None
    body: bytes | None = None
    while off + 8 <= len(data):
        cid, size = data[off : off + 4], struct.unpack_from("<I", data, off + 4)[0]
        chunk = data[off + 8 : off + 8 + size]
        if cid == b"fmt ":
            if len(chunk) < 16:
                raise WavError("fmt chunk too short")
            tag, ch, rate, _br, align, bits = struct.unpack_from("<HHIIHH", chunk)
            if tag == _FMT_EXTENSIBLE:
                if len(chunk) < 26:
                    raise WavError("extensible fmt chunk too short")
                tag = struct.unpack_from("<H", chunk, 24)[0]
            fmt = (tag, ch, rate, bits, align)
        elif cid == b"data":
            body = chunk  # a truncated data chunk (a recording cut short) is read as far as it goes
        off += 8 + size + (size & 1)
    if fmt is None or body is None:
        raise WavError("missing fmt or data chunk")
    tag, ch, rate, bits, align = fmt
    if ch < 1 or rate < 1:
        raise WavError("bad channel count or rate")
    # samples sit in containers of align/channels octets (12-bit audio in 16-bit words, say)
    width = align // ch if align >= ch else max(1, bits // 8)
    if width < 1 or bits > 8 * width:
        raise WavError(f"{bits}-bit samples do not fit {width}-octet containers")
    usable = len(body) - len(body) % (width * ch)
    raw = body[:usable]
    x: npt.NDArray[np.float64]
    if tag == _FMT_PCM:
        if width == 1:
            x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
        elif width == 2:
            x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
        elif width == 3:
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            v = np.where(v & 0x800000, v - (1 << 24), v)
            x = v.astype(np.float64) / float(1 << 23)
        elif width == 4:
            x = np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)
        else:
            raise WavError(f"unsupported PCM width {bits} bits")
    elif tag == _FMT_FLOAT:
        if width == 4:
            x = np.frombuffer(raw, "<f4").astype(np.float64)
        elif width == 8:
            x = np.frombuffer(raw, "<f8").astype(np.float64)
        else:
            raise WavError(f"unsupported float width {bits} bits")
    elif tag in (_FMT_ALAW, _FMT_ULAW):
        lin = g711.alaw_decode(raw) if tag == _FMT_ALAW else g711.ulaw_decode(raw)
        x = lin.astype(np.float64) / 32768.0
    else:
        raise WavError(f"unsupported WAV format tag {tag:#x}")
    return Audio(x.reshape(-1, ch), rate)


def read_wav(path: str | Path) -> Audio:
    """Read and decode a WAV file (blocking: call from a thread in async code)."""
    return parse_wav(Path(path).read_bytes())


def resample(x: npt.NDArray[np.float64], src_rate: int, dst_rate: int) -> npt.NDArray[np.float64]:
    """Band-limited resampling of a 1-D signal by FFT (exact for any ratio; used once per prompt).

    The spectrum is cut at the lower Nyquist frequency with a short raised-cosine taper so the
    result has no aliasing and little ringing.
    """
    if src_rate == dst_rate or x.size == 0:
        return x.astype(np.float64, copy=True)
    n_out = max(1, int(round(x.size * dst_rate / src_rate)))
    # pad both ends to keep the implicit periodic wrap-around from bleeding across the edges
    pad = min(x.size, 1024)
    xp = np.concatenate((np.zeros(pad), x, np.zeros(pad)))
    spec = np.fft.rfft(xp)
    n_out_p = int(round(xp.size * dst_rate / src_rate))
    keep = n_out_p // 2 + 1
    if keep < spec.size:
        spec = spec[:keep].copy()
        taper = max(1, keep // 20)
        spec[-taper:] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, taper)))
    y = np.fft.irfft(spec, n_out_p) * (n_out_p / xp.size)
    start = int(round(pad * dst_rate / src_rate))
    return y[start : start + n_out]


def to_telephony(audio: Audio, rate: int = RATE) -> npt.NDArray[np.int16]:
    """Mix down to mono, resample to `rate` and quantise to int16."""
    mono = audio.samples.mean(axis=1) if audio.channels > 1 else audio.samples[:, 0]
    y = resample(mono, audio.rate, rate)
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)


def float_to_int16(x: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Quantise float samples in [-1, 1) to int16 with clipping."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def wav_bytes(pcm: npt.NDArray[np.int16], rate: int = RATE, channels: int = 1) -> bytes:
    """A complete 16-bit PCM WAV file in memory; `pcm` is interleaved when channels > 1."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def write_wav(path: str | Path, pcm: npt.NDArray[np.int16], rate: int = RATE, channels: int = 1) -> None:
    """Write a 16-bit PCM WAV file atomically (blocking)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(wav_bytes(pcm, rate, channels))
    tmp.replace(p)


def rms_dbfs(pcm: npt.ArrayLike) -> float:
    """RMS level relative to int16 full scale, in dB (-inf for silence)."""
    x = np.asarray(pcm, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    r = float(np.sqrt(np.mean(x * x)))
    return 20 * np.log10(r / 32768.0) if r > 0 else float("-inf")


def normalised_xcorr_peak(a: npt.ArrayLike, b: npt.ArrayLike, max_lag: int = 4000) -> tuple[float, int]:
    """Peak normalised cross-correlation of two signals within +-max_lag samples, and its lag."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    n = x.size + y.size - 1
    size = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(y, size)), size)
    lags = np.concatenate((np.arange(0, max_lag + 1), np.arange(-max_lag, 0)))
    vals = c[lags % size]
    i = int(np.argmax(vals))
    norm = float(np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return (float(vals[i]) / norm if norm else 0.0), int(lags[i])
