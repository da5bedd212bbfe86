"""Call recording: a sans-IO buffer that aligns two streams, and a chunked WAV writer for asyncio.

Packets are placed by RTP timestamp relative to the first packet of each source, anchored to the
arrival time, so both channels stay aligned in the file even when one side is silent (DTX) or
starts later. The writer appends whole seconds at a time from a worker thread, never per packet.
"""

from __future__ import annotations

import asyncio
import hashlib
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.audio import RATE

_REBASE_SAMPLES = RATE  # more than 1 s between RTP time and arrival time: the source jumped


@dataclass(slots=True)
class _Source:
    ssrc: int
    base_ts: int
    base_pos: int


class RecordingBuffer:
    """Collects decoded frames of up to two parties and hands out aligned, interleaved PCM.

    `stereo=True`: channel 0 (left) is the caller, 1 (right) the agent. Otherwise both are mixed
    into one channel.
    """

    def __init__(self, start: float, *, stereo: bool = True, latency: float = 0.3) -> None:
        self.start = start
        self.stereo = stereo
        self.channels = 2 if stereo else 1
        self.latency = int(latency * RATE)
        self.written = 0  # samples per channel already handed out
        self._sources: list[_Source | None] = [None, None]
        self._pending: list[list[tuple[int, npt.NDArray[np.int16]]]] = [[], []]

    def push(self, party: int, arrival: float, ssrc: int, ts: int, pcm: npt.NDArray[np.int16]) -> None:
        """Add a decoded frame of `party` (0 caller, 1 agent) that arrived at `arrival`."""
        arrival_pos = round((arrival - self.start) * RATE)
        src = self._sources[party]
        if src is None or src.ssrc != ssrc:
            src = _Source(ssrc, ts, max(arrival_pos - len(pcm), 0))
            self._sources[party] = src
        pos = src.base_pos + ((ts - src.base_ts) & 0xFFFFFFFF)
        if abs(pos + len(pcm) - arrival_pos) > _REBASE_SAMPLES:
            src.base_ts, src.base_pos = ts, max(arrival_pos - len(pcm), 0)
            pos = src.base_pos
        self._pending[party].append((pos, pcm))

    def take(self, now: float, *, final: bool = False) -> npt.NDArray[np.int16]:
        """Interleaved int16 samples from the last take up to `now` minus the latency (or all, if final)."""
        if final:
            ends = [p + len(x) for q in self._pending for p, x in q]
            upto = max([self.written, *ends])
        else:
            upto = max(self.written, round((now - self.start) * RATE) - self.latency)
        n = upto - self.written
        acc = np.zeros((n, 2), dtype=np.int32)
        for party in (0, 1):
            keep: list[tuple[int, npt.NDArray[np.int16]]] = []
            for pos, pcm in self._pending[party]:
                a = max(pos, self.written)
                b = min(pos + len(pcm), upto)
                if b > a:
                    acc[a - self.written : b - self.written, party] += pcm[a - pos : b - pos]
                if pos + len(pcm) > upto:
                    keep.append((pos, pcm))
            self._pending[party] = keep
        self.written = upto
        if self.stereo:
            return np.clip(acc, -32768, 32767).astype(np.int16).reshape(-1)
        return np.clip(acc.sum(axis=1), -32768, 32767).astype(np.int16)


class WavAppender:
    """A 16-bit WAV file written in chunks from a worker thread (the header is fixed up on close)."""

    def __init__(self, path: Path, channels: int) -> None:
        self.path = path
        self.channels = channels
        self.frames = 0
        self._w: wave.Wave_write | None = None
        self._lock = asyncio.Lock()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        w = wave.open(str(self.path), "wb")
        w.setnchannels(self.channels)
        w.setsampwidth(2)
        w.setframerate(RATE)
        self._w = w

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    async def append(self, pcm: npt.NDArray[np.int16]) -> None:
        """Append interleaved samples without blocking the loop."""
        if pcm.size == 0:
            return
        data = pcm.astype("<i2").tobytes()
        async with self._lock:
            w = self._w
            if w is None:
                return
            await asyncio.to_thread(w.writeframes, data)
            self.frames += pcm.size // self.channels

    def _close_and_hash(self) -> str:
        if self._w is not None:
            self._w.close()
            self._w = None
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    async def close(self) -> str:
        """Close the file and return its SHA-256."""
        async with self._lock:
            return await asyncio.to_thread(self._close_and_hash)
