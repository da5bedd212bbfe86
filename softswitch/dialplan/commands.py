"""What the dialplan interpreter asks of a call (commands) and what the call reports back (results).

Commands are executed by the call layer in the order given. Commands that take time (playback,
digit collection, dialling, queueing, recording a message, an HTTP lookup, booking a callback) are
answered by exactly one result; the interpreter does nothing until that result (or a `Timeout` at
its deadline) is fed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from softswitch.events import Event, register_event

# --- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command."""


@dataclass(frozen=True, slots=True)
class Answer(Command):
    """Answer the call (send 200 OK and start media); no result."""


@dataclass(frozen=True, slots=True)
class Play(Command):
    """Play a prompt file (absolute or relative to the prompts folder); answered by PlaybackDone."""

    path: str
    barge_in: bool = False  # a menu's prompt: digits pressed during playback count


@dataclass(frozen=True, slots=True)
class Say(Command):
    """Speak text with TTS; answered by PlaybackDone."""

    text: str
    lang: str = "ja"
    voice: str = ""
    barge_in: bool = False


@dataclass(frozen=True, slots=True)
class CollectDigits(Command):
    """Collect DTMF (including digits pressed during a barge-in prompt just before); answered by
    DigitsCollected. `timeout` runs from the end of any prompt playing."""

    max_digits: int
    timeout: float
    terminator: str = "#"


@dataclass(frozen=True, slots=True)
class DialTarget:
    """One destination: a registered user or an external number through a trunk (None: by prefix)."""

    kind: Literal["user", "external"]
    value: str
    trunk: str | None = None


@dataclass(frozen=True, slots=True)
class Dial(Command):
    """Ring targets with a strategy; answered by DialResult. If answered, the call is bridged."""

    targets: tuple[DialTarget, ...]
    strategy: str = "ring_all"
    timeout: float = 30.0
    caller_id: str | None = None


@dataclass(frozen=True, slots=True)
class EnqueueAcd(Command):
    """Hand the caller to the ACD; answered by QueueResult."""

    queue: str
    skills: dict[str, int] = field(default_factory=dict)
    priority: int | None = None
    max_wait: float | None = None
    max_waiting: int | None = None
    variables: dict[str, str] = field(default_factory=dict)  # customer_id, vip, last_agent for affinity


@dataclass(frozen=True, slots=True)
class Transfer(Command):
    """Blind transfer; the dialplan ends."""

    to: str
    trunk: str | None = None


@dataclass(frozen=True, slots=True)
class StartRecording(Command):
    """Start recording the call; no result (a RecordingSaved event follows when it ends)."""


@dataclass(frozen=True, slots=True)
class StopRecording(Command):
    """Stop recording the call; no result."""


@dataclass(frozen=True, slots=True)
class RecordVoicemail(Command):
    """Record a message for `box` as a WAV file; answered by VoicemailRecorded."""

    box: str
    max_seconds: float = 120.0
    beep: bool = True


@dataclass(frozen=True, slots=True)
class HttpLookup(Command):
    """An HTTP request whose JSON answer fills variables; answered by HttpResult (or Timeout)."""

    url: str
    timeout: float
    method: str = "GET"
    body: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class BookCallback(Command):
    """Book a callback to `number` at `due` (epoch seconds), offered to `agent` first (empty: the
    queue's agents), then to `queue`; answered by CallbackBooked."""

    number: str
    due: float
    queue: str
    agent: str = ""
    customer_id: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Publish(Command):
    """Publish an event on the bus."""

    event: Event


@dataclass(frozen=True, slots=True)
class Hangup(Command):
    """End the call with a cause; the dialplan is finished."""

    cause: str = "normal_clearing"


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """Base of every result fed back to the interpreter."""


@dataclass(frozen=True, slots=True)
class PlaybackDone(Result):
    """A Play or Say finished (or was interrupted by a digit)."""


@dataclass(frozen=True, slots=True)
class DigitsCollected(Result):
    digits: str
    reason: Literal["max", "terminator", "timeout"] = "max"


@dataclass(frozen=True, slots=True)
class DialResult(Result):
    status: Literal["answered", "busy", "no_answer", "failed", "rejected"]
    answered_by: str = ""


@dataclass(frozen=True, slots=True)
class QueueResult(Result):
    outcome: Literal["answered", "overflow", "timeout", "full", "abandoned", "no_agents"]
    agent: str = ""


@dataclass(frozen=True, slots=True)
class HttpResult(Result):
    status: int  # 0 when the request failed without an answer
    json: Any = None


@dataclass(frozen=True, slots=True)
class VoicemailRecorded(Result):
    path: str
    duration: float


@dataclass(frozen=True, slots=True)
class CallbackBooked(Result):
    """A BookCallback's outcome: the booking's id and due time, or why it was not booked."""

    ok: bool
    id: str = ""
    due: float = 0.0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Timeout(Result):
    """Fed at or after the interpreter's `deadline`."""


@dataclass(frozen=True, slots=True)
class CallerHangup(Result):
    """The caller hung up; the dialplan stops."""


# --- events -------------------------------------------------------------------------------------


@register_event
@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailLeft(Event):
    """A caller left a voicemail message (saved as WAV)."""

    kind: ClassVar[str] = "voicemail_left"
    box: str
    caller: str
    path: str
    duration: float
    call_uuid: str = ""
