"""Supervisor mixing of 20 ms frames, sans-IO: listen, whisper and barge.

Each call to `mix()` takes the latest frame from each party (None when a party sent nothing) and
returns what each party hears. Nobody ever hears their own voice.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from media.audio import FRAME_SAMPLES

CALLER = "caller"
AGENT = "agent"
SUPERVISOR = "supervisor"


class SuperviseMode(StrEnum):
    """listen: supervisor hears both; whisper: agent also hears supervisor; barge: all hear all."""

    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


# who hears whom, per mode: listener -> the parties mixed into what they hear
_MATRIX: Mapping[SuperviseMode, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        SuperviseMode.LISTEN: {CALLER: (AGENT,), AGENT: (CALLER,), SUPERVISOR: (CALLER, AGENT)},
        SuperviseMode.WHISPER: {CALLER: (AGENT,), AGENT: (CALLER, SUPERVISOR), SUPERVISOR: (CALLER, AGENT)},
        SuperviseMode.BARGE: {
            CALLER: (AGENT, SUPERVISOR),
            AGENT: (CALLER, SUPERVISOR),
            SUPERVISOR: (CALLER, AGENT),
        },
    }
)


class Mixer:
    """A three-party mixer for one supervised call; `mode` may change between frames."""

    def __init__(
        self, mode: SuperviseMode | str = SuperviseMode.LISTEN, frame_samples: int = FRAME_SAMPLES
    ) -> None:
        self.mode = SuperviseMode(mode)
        self.frame_samples = frame_samples

    def hears(self, listener: str) -> tuple[str, ...]:
        """The parties whose audio reaches `listener` in the current mode."""
        return _MATRIX[self.mode][listener]

    def mix(self, frames: dict[str, npt.NDArray[np.int16] | None]) -> dict[str, npt.NDArray[np.int16]]:
        """One output frame per party (int16, `frame_samples` long), saturating on overflow."""
        n = self.frame_samples
        wide: dict[str, npt.NDArray[np.int32]] = {}
        for party, f in frames.items():
            if f is None:
                continue
            a = np.zeros(n, dtype=np.int32)
            m = min(n, len(f))
            a[:m] = f[:m]
            wide[party] = a
        out: dict[str, npt.NDArray[np.int16]] = {}
        for listener, sources in _MATRIX[self.mode].items():
            acc = np.zeros(n, dtype=np.int32)
            for s in sources:
                if s in wide:
                    acc += wide[s]
            out[listener] = np.clip(acc, -32768, 32767).astype(np.int16)
        return out
