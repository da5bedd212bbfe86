"""Reliable provisional responses, UAS side (RFC 3262 section 3). Sans-IO.

One `ReliableProvisionals` per INVITE the switch answers. The call layer hands it every provisional
and final response for that INVITE and every PRACK; it says what to send and when it next needs a
tick. It never reads a clock: `now` is an argument and `next_deadline` is the timer to arm.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from softswitch.sip.message import Request, Response

MAX_RSEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class SendResponse:
    """Pass this response to the INVITE's server transaction (a first send or a retransmission)."""

    response: Response


@dataclass(frozen=True, slots=True)
class PrackTimeout:
    """A reliable provisional went unacknowledged for 64*T1: reject the INVITE with a 5xx (3262 s3)."""

    rseq: int


Output = SendResponse | PrackTimeout


def option_tags(req: Request | Response, header: str) -> set[str]:
    """The option tags of a Require or Supported header, lower-cased."""
    return {t.strip().lower() for t in req.headers.get_all(header) if t.strip()}


class ReliableProvisionals:
    """Sends an INVITE's provisional responses reliably (Require: 100rel, RSeq), resends each at
    T1, 2*T1, 4*T1... until its PRACK, sends one at a time (later ones wait for the PRACK), and
    holds a 2xx back while a provisional carrying SDP is unacknowledged."""

    def __init__(self, invite: Request, *, t1: float = 0.5, first_rseq: int | None = None) -> None:
        self.invite = invite
        self.t1 = t1
        # RFC 3262 section 3: the first RSeq is random between 1 and 2**31 - 1 and leaves room to count up.
        self._next_rseq = first_rseq if first_rseq is not None else random.randint(1, 2**30)
        self._pending: Response | None = None
        self._pending_rseq = 0
        self._sent_at = 0.0
        self._interval = t1
        self._retransmit_at: float | None = None
        self._queue: list[Response] = []
        self._held: Response | None = None
        self._unacked_rseqs: set[int] = set()  # sent, not PRACKed: late PRACKs still get 200
        self.finished = False  # a final response went out, or the INVITE timed out

    @classmethod
    def for_invite(cls, invite: Request, *, t1: float = 0.5) -> ReliableProvisionals | None:
        """A sender when the caller requires or supports 100rel, else None (provisionals stay unreliable)."""
        if "100rel" in option_tags(invite, "Require") or "100rel" in option_tags(invite, "Supported"):
            return cls(invite, t1=t1)
        return None

    @property
    def next_deadline(self) -> float | None:
        """When `tick` must run next: a retransmission or the 64*T1 give-up, whichever is first."""
        if self._retransmit_at is None:
            return None
        return min(self._retransmit_at, self._sent_at + 64 * self.t1)

    @property
    def waiting(self) -> bool:
        """A reliable provisional is out and not yet acknowledged."""
        return self._pending is not None

    @property
    def holding(self) -> bool:
        """A 2xx is held back until a PRACK."""
        return self._held is not None

    def provisional(self, resp: Response, now: float) -> list[Output]:
        """A 101-199 response to send reliably (100 Trying is never reliable: sent as is)."""
        if self.finished:
            return []
        if resp.status == 100:
            return [SendResponse(resp)]
        if self._pending is not None:
            self._queue.append(resp)  # one at a time (section 3): sent when the PRACK comes
            return []
        return self._send(resp, now)

    def final(self, resp: Response, now: float) -> list[Output]:
        """The INVITE's final response: sent at once, unless it is a 2xx while a provisional with
        SDP is unacknowledged (section 3: the 2xx waits for that PRACK). Retransmissions stop."""
        if self.finished:
            return []
        # Queued provisionals were never sent: the final response makes them pointless.
        self._queue.clear()
        if 200 <= resp.status < 300 and self._pending is not None and self._pending.body:
            self._held = resp
            return []
        self._stop()
        return [SendResponse(resp)]

    def prack(self, req: Request, now: float) -> tuple[int, list[Output]]:
        """A PRACK: the status to answer it with (200; 481 when it acknowledges nothing we sent;
        400 for a malformed RAck) and what to send now that the provisional is acknowledged."""
        try:
            rseq_s, cseq_s, method = (req.headers.get("RAck") or "").split()
            rseq, cseq = int(rseq_s), int(cseq_s)
        except ValueError:
            return 400, []
        if cseq != self.invite.cseq[0] or method.upper() != self.invite.method:
            return 481, []
        if rseq not in self._unacked_rseqs:
            return 481, []
        self._unacked_rseqs.discard(rseq)
        if self._pending is None or rseq != self._pending_rseq:
            return 200, []  # a late PRACK for a provisional the final response overtook
        self._pending = None
        self._retransmit_at = None
        if self._held is not None:
            held, self._held = self._held, None
            self._stop()
            return 200, [SendResponse(held)]
        if self._queue and not self.finished:
            return 200, self._send(self._queue.pop(0), now)
        return 200, []

    def tick(self, now: float) -> list[Output]:
        """Retransmit the unacknowledged provisional, or give up after 64*T1."""
        pending = self._pending
        if pending is None or self._retransmit_at is None or self.finished:
            return []
        if now >= self._sent_at + 64 * self.t1:
            rseq = self._pending_rseq
            self._stop()
            self._held = None
            self.finished = True
            return [PrackTimeout(rseq)]
        if now < self._retransmit_at:
            return []
        self._interval *= 2
        self._retransmit_at = now + self._interval
        return [SendResponse(pending)]

    def stop(self) -> None:
        """The INVITE is over (cancelled, failed): nothing more is sent."""
        self._stop()
        self._held = None
        self._queue.clear()
        self.finished = True

    def _send(self, resp: Response, now: float) -> list[Output]:
        rseq = self._next_rseq
        self._next_rseq = rseq + 1 if rseq < MAX_RSEQ else 1
        h = resp.headers
        if "100rel" not in option_tags(resp, "Require"):
            h.add("Require", "100rel")
        h.set("RSeq", str(rseq))
        self._pending = resp
        self._pending_rseq = rseq
        self._unacked_rseqs.add(rseq)
        self._sent_at = now
        self._interval = self.t1
        self._retransmit_at = now + self.t1
        return [SendResponse(resp)]

    def _stop(self) -> None:
        self._pending = None
        self._retransmit_at = None
        self.finished = True
