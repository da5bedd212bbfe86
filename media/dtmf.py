"""DTMF, sans-IO: RFC 4733 telephone-events (receive with de-duplication, send) and in-band detection.

The in-band detector runs the Goertzel algorithm over 205-sample blocks on the standard
697-1633 Hz grid, with energy, dominance and twist checks so speech, noise, music and single or
non-grid tones are not taken for digits.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

EVENT_CODES = "0123456789*#ABCD"
ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
_EVENT = struct.Struct("!BBH")


def digit_to_event(digit: str) -> int:
    """RFC 4733 event code of a DTMF digit (0-9, *, #, A-D)."""
    i = EVENT_CODES.find(digit.upper())
    if i < 0 or len(digit) != 1:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return i


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A detected key press: the digit, how long it lasted and how it arrived (rfc4733 | inband)."""

    digit: str
    duration_ms: int
    source: str


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 event payload."""

    event: int
    end: bool
    volume: int
    duration: int  # in timestamp units

    def build(self) -> bytes:
        return _EVENT.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF
        )

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError("telephone-event payload shorter than 4 octets")
        ev, flags, dur = _EVENT.unpack_from(payload)
        return cls(ev, bool(flags & 0x80), flags & 0x3F, dur)


class TelephoneEventReceiver:
    """Turns the stream of RFC 4733 packets into one DtmfDigit per key press.

    An event is identified by its RTP timestamp: the three redundant end packets (and any
    retransmitted updates) of one press report it once. If every end packet is lost, the press is
    reported when the next event starts or when `flush()` is called (e.g. on a 200 ms silence timer).
    """

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._current_ts: int | None = None
        self._current_event = -1
        self._current_duration = 0
        self._reported_ts: int | None = None

    def feed(self, timestamp: int, payload: bytes) -> list[DtmfDigit]:
        """Feed one telephone-event packet (RTP timestamp and payload); returns completed digits."""
        try:
            ev = TelephoneEvent.parse(payload)
        except ValueError:
            return []
        out: list[DtmfDigit] = []
        if timestamp == self._reported_ts:
            return out  # a redundant end packet of a press already reported
        if self._current_ts is not None and timestamp != self._current_ts:
            out.extend(self.flush())
        if ev.event >= len(EVENT_CODES):
            return out  # not DTMF (e.g. a fax tone event): ignore
        self._current_ts = timestamp
        self._current_event = ev.event
        self._current_duration = max(self._current_duration, ev.duration)
        if ev.end:
            out.append(self._emit())
        return out

    def _emit(self) -> DtmfDigit:
        d = DtmfDigit(
            EVENT_CODES[self._current_event], self._current_duration * 1000 // self.clock_rate, "rfc4733"
        )
        self._reported_ts = self._current_ts
        self._current_ts = None
        self._current_duration = 0
        return d

    def flush(self) -> list[DtmfDigit]:
        """Report an event whose end packets never arrived."""
        if self._current_ts is None:
            return []
        return [self._emit()]


def telephone_event_payloads(
    digit: str, duration_ms: int = 100, *, volume: int = 10, ptime_ms: int = 20, clock_rate: int = 8000
) -> list[bytes]:
    """The payloads to send for one key press, one per `ptime_ms`: updates, then three end packets.

    All share the RTP timestamp of the event start; the first carries the marker bit.
    """
    ev = digit_to_event(digit)
    step = ptime_ms * clock_rate // 1000
    total = max(step, duration_ms * clock_rate // 1000)
    out = [TelephoneEvent(ev, False, volume, d).build() for d in range(step, total, step)]
    out.extend([TelephoneEvent(ev, True, volume, total).build()] * 3)
    return out


# ------------------------------------------------------------------------------------ in-band


def goertzel(samples: npt.ArrayLike, freq: float, rate: int = 8000) -> float:
    """Power of `freq` in `samples` by the Goertzel recurrence (reference implementation)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in np.asarray(samples, dtype=np.float64):
        s1, s2 = float(x) + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def dtmf_tone(
    digit: str, duration_ms: int, *, amplitude: float = 8000.0, rate: int = 8000, twist_db: float = 0.0
) -> npt.NDArray[np.int16]:
    """A DTMF tone as int16 samples (`twist_db` > 0 makes the column tone louder)."""
    digit = digit.upper()
    where = [(r, row.find(digit)) for r, row in enumerate(KEYPAD) if len(digit) == 1 and digit in row]
    if not where:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    r, c = where[0]
    t = np.arange(duration_ms * rate // 1000) / rate
    col_amp = amplitude * 10 ** (twist_db / 20)
    x = amplitude * np.sin(2 * np.pi * ROWS[r] * t) + col_amp * np.sin(2 * np.pi * COLS[c] * t)
    return np.clip(x, -32768, 32767).astype(np.int16)


class InbandDtmfDetector:
    """Detects DTMF tones in 8 kHz linear audio; feed any number of samples at a time.

    A digit is accepted after two consecutive 205-sample blocks (about 51 ms) agree and is reported,
    with its duration, once the tone stops for two blocks. Checks per block: minimum energy, each
    group's strongest tone dominating the others, twist within limits, and the two tones carrying
    most of the block's energy (which rejects speech and noise).
    """

    BLOCK = 205

    def __init__(
        self,
        *,
        rate: int = 8000,
        min_level_dbfs: float = -36.0,
        normal_twist_db: float = 8.0,
        reverse_twist_db: float = 8.0,
        dominance: float = 6.0,
        tone_energy_ratio: float = 0.6,
    ) -> None:
        self.rate = rate
        n = np.arange(self.BLOCK)
        freqs = np.array(ROWS + COLS)
        # The Goertzel output equals one DFT bin at each (non-integer) frequency, so all eight are
        # evaluated at once as a 205x8 product: the same numbers as `goertzel()`, without a Python loop.
        self._basis = np.exp(-2j * np.pi * np.outer(n, freqs) / rate)
        full = 32768.0 * 10 ** (min_level_dbfs / 20)
        self._min_energy = self.BLOCK * full * full / 2  # a single sine at min level over the block
        self._normal_twist = 10 ** (normal_twist_db / 10)
        self._reverse_twist = 10 ** (reverse_twist_db / 10)
        self._dominance = dominance
        self._ratio = tone_energy_ratio
        self._buf = np.zeros(0, dtype=np.float64)
        self._candidate = ""
        self._candidate_blocks = 0
        self._active = ""
        self._active_blocks = 0
        self._gap_blocks = 0

    def classify(self, block: npt.NDArray[np.float64]) -> str:
        """The digit present in one 205-sample block, or "" (public for tests)."""
        energy = float(np.dot(block, block))
        if energy < self._min_energy:
            return ""
        power = np.abs(block @ self._basis) ** 2
        rows, cols = power[:4], power[4:]
        r, c = int(np.argmax(rows)), int(np.argmax(cols))
        pr, pc = float(rows[r]), float(cols[c])
        if pr <= 0 or pc <= 0:
            return ""
        if pc > pr * self._reverse_twist or pr > pc * self._normal_twist:
            return ""
        others_r = np.delete(rows, r)
        others_c = np.delete(cols, c)
        if pr < self._dominance * float(others_r.max()) or pc < self._dominance * float(others_c.max()):
            return ""
        # |X|^2 of a sine of amplitude A over N samples is (A N / 2)^2, its energy N A^2 / 2
        if (pr + pc) * 2.0 / self.BLOCK < self._ratio * energy:
            return ""
        return KEYPAD[r][c]

    def feed(self, samples: npt.ArrayLike) -> list[DtmfDigit]:
        """Feed linear samples; returns digits whose tone has ended."""
        x = np.asarray(samples, dtype=np.float64)
        buf = np.concatenate((self._buf, x)) if self._buf.size else x
        out: list[DtmfDigit] = []
        nblocks = buf.size // self.BLOCK
        for i in range(nblocks):
            d = self.classify(buf[i * self.BLOCK : (i + 1) * self.BLOCK])
            out.extend(self._step(d))
        self._buf = buf[nblocks * self.BLOCK :].copy()
        return out

    def _step(self, d: str) -> list[DtmfDigit]:
        if self._active:
            if d == self._active:
                self._active_blocks += 1
                self._gap_blocks = 0
                return []
            self._gap_blocks += 1
            if self._gap_blocks < 2 and not d:
                return []  # a one-block dropout inside a tone is not a release
            done = DtmfDigit(self._active, self._active_blocks * self.BLOCK * 1000 // self.rate, "inband")
            self._active = ""
            self._candidate, self._candidate_blocks = d, 1 if d else 0
            return [done]
        if d and d == self._candidate:
            self._candidate_blocks += 1
            if self._candidate_blocks >= 2:
                self._active, self._active_blocks, self._gap_blocks = d, self._candidate_blocks, 0
        else:
            self._candidate, self._candidate_blocks = d, 1 if d else 0
        return []

    def flush(self) -> list[DtmfDigit]:
        """Report a tone still active at the end of the stream."""
        if not self._active:
            return []
        done = DtmfDigit(self._active, self._active_blocks * self.BLOCK * 1000 // self.rate, "inband")
        self._active = ""
        return [done]
