"""The interface the call layer uses for media; `media.local.LocalMediaBackend` implements it in-process.

Legs are named by the caller of the interface (a call leg id, e.g. the SIP Call-ID plus tag).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.dtmf import DtmfDigit
from media.mixer import SuperviseMode
from media.ports import PortPoolExhausted
from media.sdp import Negotiated, SessionDescription
from softswitch.events import RecordingSaved

__all__ = [
    "DtmfCallback",
    "LocalEndpoint",
    "MediaBackend",
    "PlaybackHandle",
    "PlaySource",
    "PortPoolExhausted",
    "TimeoutCallback",
]

PlaySource = str | Path | npt.NDArray[np.int16]
DtmfCallback = Callable[[str, DtmfDigit], object]  # (leg_id, digit)
TimeoutCallback = Callable[[str], object]  # (leg_id) when no RTP arrived for the timeout


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """Where a leg receives media: put `address`/`port` in the SDP c=/m= lines."""

    leg_id: str
    address: str
    port: int

    @property
    def rtcp_port(self) -> int:
        return self.port + 1


class PlaybackHandle(abc.ABC):
    """A prompt or music being played to a leg."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop playing now (idempotent)."""

    @abc.abstractmethod
    async def wait(self) -> str:
        """Wait until playback ends; returns why: "finished", "stopped", "barge_in" or "released"."""

    @property
    @abc.abstractmethod
    def done(self) -> bool: ...


class MediaBackend(abc.ABC):
    """Media operations for calls: endpoints, relay, prompts, recording, DTMF and supervision."""

    @abc.abstractmethod
    async def allocate(self, leg_id: str) -> LocalEndpoint:
        """Reserve an RTP/RTCP port pair for a leg; raises PortPoolExhausted (answer 503)."""

    @abc.abstractmethod
    async def set_remote(self, leg_id: str, remote: SessionDescription | Negotiated) -> None:
        """Apply the far end's SDP (offer or answer, including re-INVITEs and hold)."""

    @abc.abstractmethod
    async def bridge(self, leg_a: str, leg_b: str) -> None:
        """Relay media between two legs (anchored, no decoding when the codecs match)."""

    @abc.abstractmethod
    async def unbridge(self, leg_id: str) -> None:
        """Stop relaying for a leg and its partner."""

    @abc.abstractmethod
    async def play(
        self, leg_id: str, source: PlaySource, *, loop: bool = False, barge_in: bool = False
    ) -> PlaybackHandle:
        """Play a WAV file (any common format) or 8 kHz int16 samples; `barge_in` stops on a key press.

        Replaces whatever was playing to the leg. Raises OSError for a missing file and
        media.audio.WavError for one that cannot be decoded.
        """

    @abc.abstractmethod
    async def stop(self, leg_id: str) -> None:
        """Stop whatever is playing to a leg."""

    @abc.abstractmethod
    async def send_dtmf(self, leg_id: str, digits: str, *, duration_ms: int = 100) -> None:
        """Send digits as RFC 4733 events (or in-band tones when the peer did not offer them)."""

    @abc.abstractmethod
    async def record_start(
        self,
        call_uuid: str,
        caller_leg: str,
        agent_leg: str | None = None,
        *,
        path: str | Path | None = None,
        stereo: bool = True,
    ) -> Path:
        """Start recording a call (caller left, agent right; or mono mixed). Returns the file path."""

    @abc.abstractmethod
    async def record_stop(self, call_uuid: str) -> RecordingSaved | None:
        """Stop recording; publishes and returns RecordingSaved (None when not recording)."""

    @abc.abstractmethod
    def on_dtmf(self, callback: DtmfCallback) -> Callable[[], None]:
        """Call `callback(leg_id, digit)` for every key press on any leg; returns an unsubscribe."""

    @abc.abstractmethod
    def on_timeout(self, callback: TimeoutCallback) -> Callable[[], None]:
        """Call `callback(leg_id)` once when a leg's RTP stops for the timeout; returns an unsubscribe."""

    @abc.abstractmethod
    async def supervise(
        self, mode: SuperviseMode | str, supervisor_leg: str, agent_leg: str, caller_leg: str
    ) -> None:
        """Start (or change the mode of) supervision: listen, whisper or barge."""

    @abc.abstractmethod
    async def unsupervise(self, supervisor_leg: str) -> None:
        """End supervision; the caller and agent go back to the direct relay."""

    @abc.abstractmethod
    async def release(self, leg_id: str) -> None:
        """Stop everything on a leg and free its ports (idempotent)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every leg and stop background tasks."""
