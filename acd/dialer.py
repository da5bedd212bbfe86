"""Outbound campaign core: which record to dial next, for whom, and how many lines at once (sans-IO).

The asyncio runner feeds what happened (a dial's final result, 200 OK, a bridge to an agent, the
end of the agent's call, agents becoming free) together with the current time and places the
`Dial`s that `pace` returns. Nothing here reads a clock or touches the network.

Records
-------
A record is due when it is PENDING, or RETRY with `next_at <= now`. Due records are handed out in
`(next_at, arrival)` order: imported records keep their list order (their `next_at` is 0), retries
come back at their retry time, and a record skipped in preview mode is moved behind the records
due at that moment. A record is handed out by one dial or one preview at a time (the DIALLING and
PREVIEWING states); the attempt is counted when the number is dialled, so `Dial.attempt` runs from
1 and a record FAILs when its attempts reach `max_attempts` without a connection. The do-not-call
list is checked when records are added, again just before each number is dialled (the callable can
be a live list), and `block` moves every record not yet final with that number to DNC at once (a
dial in flight still has its result recorded, but the record stays DNC).

Predictive pacing
-----------------
Let k be the agents free now (not reserved, less the answered calls already waiting for one), n0
the lines ringing and not answered yet, p the measured answer probability, and X ~ Binomial(n, p)
the answers that n lines will produce. An answered call is abandoned when the answers exceed the
agents who can take them, so the expected abandonment of a decision is E[max(0, X - K)] / E[X].
`pace` picks the largest n >= n0 (n - n0 new dials, at most `max_lines_per_agent` per counted
agent) whose ratio is at or under the target; n <= k is always safe, and k = 0 dials nothing.

K counts the agents about to become free: K = k + Y. Every agent the dialer connected and has not
seen free again is busy (talking, or wrapping up after `handle_ended` until `pace` lists them
free). A busy pool frees up at rate busy / (talk + wrap-up) whatever the shape of the talk-time
distribution (Little's law), so each talking agent is taken to be free within the horizon h with
probability P(Exp(talk) + Exp(wrap) <= h) and each wrapping one with P(Exp(wrap) <= h); Y ~
Binomial(busy, mean of those). One binomial with the mean probability has slightly more variance
than the exact mixture, which errs on the safe side. The horizon h is the mean time from dial to
200 OK: by Little's law the lines ringing hold (answer rate) * h future answers, and agents free
at (agent throughput) * h within h, so with this h a steady pipeline is expected to produce as
many answers as agents, and the binomial spread of X and Y (through the target) sets the margin.
Counting agents over a longer horizon floods the agents with answers; a shorter one leaves them
idle, which is what progressive dialling does.

The ratio is computed exactly: E[max(0, X - k - Y)] = sum_y P(Y=y) E[max(0, X - k - y)], both
binomials taken within 10 standard deviations of their means (what lies beyond is below 1e-20).
f(n) = E[max(0, X_n - K)] is convex in n with f(0) = 0 (its increments p P(X_n >= K) grow with
n), so f(n) / E[X_n] never decreases and the largest n is found by galloping then bisecting up
from n0: a few O(sqrt(n) + sqrt(busy)) evaluations per call.

Measurements. p is the share answered among the last `sample_window` attempts taken in dial order
once the outcome of each and of every earlier attempt is known (answered, or ended; a line ringing
beyond `ring_timeout` counts as unanswered). Taking completed attempts as they end would skew p
towards quick outcomes: at the start of a campaign the first results are busy signals and early
answers, and a low p would flood the agents. The same cohort gives the dial-to-answer delays.
Talk and wrap-up times are measured as exits / exposure (agent-seconds in the phase), both
decaying over `rate_horizon`: the maximum-likelihood rate of an exponential model that counts the
calls still going on, so the first short calls do not make agents look about to be free.
Before `min_samples` answered calls have been measured the dialer dials like progressive, one
line per free agent.

Feedback. The model is an approximation (an answer early in the horizon cannot use an agent freed
late; small teams feel that most), so the target is the ceiling c corrected by a
proportional-integral controller on the measured abandonment, steered to a setpoint
s = `abandon_setpoint` * c a little under the ceiling (a finite campaign's rate scatters around
where it is steered): u = c - Kp * (recent - s) - excess / payback, where recent is the rate over
the last `abandon_window` answered calls and excess = abandoned - s * answered is the integral of
the error (banked headroom is limited to c, so a burst still tightens). The target is u clamped to
[0, c]: never more than the ceiling. Below a zero target the controller's remaining authority is
the agents about to be free: only a share 1 + u / c of them is counted, down to none, where the
dialer keeps one line per free agent plus what the binomial tails allow.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Mode(StrEnum):
    """How the campaign dials: the agent clicks, one line per agent, or several lines per agent."""

    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    PREDICTIVE = "predictive"


class Result(StrEnum):
    """How one attempt ended (the values of `CampaignAttempt.result`)."""

    CONNECTED = "connected"
    ABANDONED = "abandoned"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"


class RecordState(StrEnum):
    """Where a call-list record is: due, handed out, waiting to retry, or final (done, failed, dnc)."""

    PENDING = "pending"
    DIALLING = "dialling"
    PREVIEWING = "previewing"
    RETRY = "retry"
    DONE = "done"
    FAILED = "failed"
    DNC = "dnc"


FINAL_STATES = frozenset({RecordState.DONE, RecordState.FAILED, RecordState.DNC})
DEFAULT_RETRY_DELAYS: dict[str, float] = {
    Result.BUSY: 300.0,
    Result.NO_ANSWER: 1800.0,
    Result.REJECTED: 3600.0,
    Result.UNREACHABLE: 900.0,
    Result.ABANDONED: 600.0,
}


@dataclass
class DialerSettings:
    """A campaign's dialling rules; retry delays are seconds keyed by result."""

    mode: Mode
    max_attempts: int = 3
    retry_delays: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RETRY_DELAYS))
    abandon_ceiling: float = 0.03
    connect_window: float = 2.0
    max_lines_per_agent: float = 3.0
    min_samples: int = 20
    default_answer_rate: float = 0.5
    default_handle_time: float = 120.0
    # Additions: measurement windows, the answer-delay prior and the feedback gains (see the module doc).
    sample_window: int = 500  # attempts behind the measured answer rate and answer delays
    default_answer_delay: float = 15.0  # seconds from dial to 200 OK until measured
    default_wrap_up: float = 15.0  # prior for the wrap-up after a call until measured
    rate_horizon: float = 1800.0  # seconds: time constant of the measured talk and wrap-up rates
    ring_timeout: float = 120.0  # a dial ringing longer counts as unanswered in the measured answer rate
    abandon_setpoint: float = 0.9  # share of the ceiling the feedback steers the measured abandonment to
    abandon_window: int = 200  # answered calls behind the recent abandonment rate (P term)
    abandon_gain: float = 0.5  # Kp
    payback: int = 100  # answered calls over which an excess of abandoned calls is paid back (1 / Ki)


@dataclass
class Record:
    """One number of a call list and where it stands."""

    id: str
    number: str
    customer_id: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    state: RecordState = RecordState.PENDING
    attempts: int = 0
    next_at: float = 0.0
    last_result: str = ""
    agent: str = ""


@dataclass(frozen=True)
class Dial:
    """Place this call now. `agent` is set when the call is reserved for that agent (preview, progressive)."""

    record_id: str
    number: str
    attempt: int
    agent: str | None


_RINGING, _WAITING, _OTHER = range(3)


@dataclass(eq=False)
class _Attempt:
    """A dial placed: in flight until its result, in the measurement cohort until its outcome is known."""

    dialled_at: float
    agent: str | None
    answered_at: float | None = None
    connected: bool = False
    resolved: bool = False  # the final result has been reported
    skipped: bool = False  # reported as SKIPPED: never placed, not measured

    def status(self) -> int:
        """Ringing, answered and waiting for an agent, or anything else (connected, ended)."""
        if self.resolved or self.connected:
            return _OTHER
        return _RINGING if self.answered_at is None else _WAITING


class _Window:
    """Sum and sum of squares of the last `size` samples."""

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=max(1, size))
        self.total = 0.0
        self.squares = 0.0

    def add(self, value: float) -> None:
        if len(self.values) == self.values.maxlen:
            old = self.values[0]
            self.total -= old
            self.squares -= old * old
        self.values.append(value)
        self.total += value
        self.squares += value * value

    def __len__(self) -> int:
        return len(self.values)

    def mean(self, default: float) -> float:
        return self.total / len(self.values) if self.values else default


class _Phase:
    """Agents in one busy phase (talking on our calls, or wrapping up) and how fast they leave it.

    Exposure (agent-seconds spent in the phase) and exits both decay with time constant `horizon`, so
    exits / exposure is the maximum-likelihood leaving rate of an exponential model over about the last
    `horizon` seconds, counting phases still under way (right-censored). Early in a campaign, when only
    the short calls have ended, it errs on the long side, which is the safe side for pacing.
    """

    def __init__(self, horizon: float, prior_mean: float) -> None:
        self.horizon = max(1.0, horizon)
        self.prior_mean = prior_mean
        self.members: dict[str, float] = {}  # agent -> entered at
        self.exposure = 0.0
        self.exits = 0.0
        self.last = 0.0

    def _touch(self, now: float) -> None:
        dt = now - self.last
        if dt > 0:
            decay = math.exp(-dt / self.horizon)
            # exact integral of len(members) * exp(-(now - s) / horizon) over the elapsed interval
            self.exposure = self.exposure * decay + len(self.members) * self.horizon * (1.0 - decay)
            self.exits *= decay
            self.last = now

    def enter(self, agent: str, now: float) -> None:
        self._touch(now)
        self.members[agent] = now

    def leave(self, agent: str, now: float, *, completed: bool = True) -> float | None:
        """Remove the agent; returns the time they spent in the phase (None if they were not in it)."""
        if agent not in self.members:
            return None
        self._touch(now)
        since = self.members.pop(agent)
        if completed:
            self.exits += 1.0
        return now - since

    def mean(self, now: float) -> float:
        """Mean time in the phase (one pseudo-exit at the prior keeps it finite before the first exit)."""
        self._touch(now)
        return (self.exposure + self.prior_mean) / (self.exits + 1.0)


class Dialer:
    """The sans-IO core of one outbound campaign: records, retries, do-not-call and pacing."""

    def __init__(
        self,
        campaign: str,
        settings: DialerSettings,
        records: Iterable[Record] = (),
        *,
        dnc: Callable[[str], bool] = lambda n: False,
    ) -> None:
        self.campaign = campaign
        self.settings = settings
        self._dnc = dnc
        self._blocked: set[str] = set()
        self._records: dict[str, Record] = {}
        self._counts: dict[RecordState, int] = dict.fromkeys(RecordState, 0)
        # Due lines: heaps of (next_at, seq, record id); an entry is live while _queued[id] == seq.
        self._pending: list[tuple[float, int, str]] = []
        self._retry: list[tuple[float, int, str]] = []  # retries not yet known to be due
        self._due_retry: list[tuple[float, int, str]] = []  # retries whose time has come, waiting for an agent
        self._queued: dict[str, int] = {}
        self._seq = itertools.count()
        self._last_seq = 0  # place in line of the record `_next_due` took last
        self._flight: dict[str, _Attempt] = {}
        self._unreserved = [0, 0, 0]  # dials in flight for no agent in particular: ringing, waiting, other
        self._reserved: dict[str, str] = {}  # agent -> record of the dial in flight for them
        self._previews: dict[str, str] = {}  # agent -> record they are previewing
        self._preview_seq: dict[str, int] = {}  # previewed record -> its place in line, for `release`
        self._talking: dict[str, tuple[str, float]] = {}  # record -> (agent, connected at)
        self._talk = _Phase(settings.rate_horizon, settings.default_handle_time)
        self._wrap = _Phase(settings.rate_horizon, settings.default_wrap_up)
        # Measurements. The cohort holds attempts in dial order until the outcome of each and of every
        # earlier one is known, so the answer rate is never skewed towards quick outcomes (busy, early answers).
        self._cohort: deque[_Attempt] = deque()
        self._outcomes: deque[int] = deque(maxlen=max(1, settings.sample_window))
        self._outcomes_sum = 0
        self._sampled_answers = 0
        self._delays = _Window(settings.sample_window)
        self._handles = _Window(settings.sample_window)
        self._wraps = _Window(settings.sample_window)
        self._recent_abandons: deque[int] = deque(maxlen=max(1, settings.abandon_window))
        self._recent_sum = 0
        self._attempts = 0
        self._completed = 0
        self._answered = 0
        self._connected = 0
        self._abandoned = 0
        self._resolved_answers = 0  # answered attempts with a final result (connected or abandoned)
        self._results: dict[str, int] = dict.fromkeys(Result, 0)
        self._lines_per_agent = 0.0
        self._lpa_sum = 0.0
        self._lpa_n = 0
        self._target = settings.abandon_ceiling
        self._soon_share = 1.0
        self.add_records(records)

    # ---- records ---------------------------------------------------------------------------------

    def add_records(self, records: Iterable[Record]) -> int:
        """Add records (duplicate ids are ignored) and return how many were added; DNC numbers become DNC."""
        added = 0
        for rec in records:
            if rec.id in self._records:
                continue
            rec.state = RecordState(rec.state)
            if rec.state in (RecordState.DIALLING, RecordState.PREVIEWING):
                # A dial or preview cut short by a restart: the record is simply due again.
                rec.state = RecordState.PENDING
            if rec.state not in FINAL_STATES:
                if self._is_blocked(rec.number):
                    rec.state = RecordState.DNC
                elif rec.attempts >= self.settings.max_attempts:
                    rec.state = RecordState.FAILED
            self._records[rec.id] = rec
            self._counts[rec.state] += 1
            if rec.state in (RecordState.PENDING, RecordState.RETRY):
                self._enqueue(rec)
            added += 1
        return added

    def records(self) -> dict[str, Record]:
        """Every record by id (the dialer owns them: read, do not modify)."""
        return dict(self._records)

    def record(self, record_id: str) -> Record | None:
        """One record without copying the list (the dialer owns it: read, do not modify)."""
        return self._records.get(record_id)

    def block(self, number: str) -> list[Record]:
        """Do-not-call added: every record with `number` that is not final yet becomes DNC; returns them."""
        self._blocked.add(number)
        changed = []
        for rec in self._records.values():
            if rec.number != number or rec.state in FINAL_STATES:
                continue
            self._queued.pop(rec.id, None)
            if rec.state is RecordState.PREVIEWING and self._previews.get(rec.agent) == rec.id:
                del self._previews[rec.agent]
                self._preview_seq.pop(rec.id, None)
            self._set_state(rec, RecordState.DNC)
            changed.append(rec)
        return changed

    def finished(self) -> bool:
        """True when no record can be dialled again (all done, failed or do-not-call)."""
        c = self._counts
        return not (c[RecordState.PENDING] or c[RecordState.RETRY] or c[RecordState.DIALLING]
                    or c[RecordState.PREVIEWING])

    def next_deadline(self, now: float | None = None) -> float | None:
        """Earliest `next_at` among RETRY records; with `now`, among those not due yet (arm a timer for that).

        Without `now` the answer may be in the past while due retries wait for a free agent; a
        timer armed for it would fire at once and again. Those records need no timer: `pace` hands
        them out when an agent frees up.
        """
        if now is not None:
            self._promote(now)
        top = self._live_top(self._retry)
        if now is None:
            due = self._live_top(self._due_retry)
            if due is not None and (top is None or due < top):
                top = due
        return top[0] if top is not None else None

    def in_flight(self) -> int:
        """Dials placed whose final result has not been reported yet."""
        return len(self._flight)

    # ---- pacing ----------------------------------------------------------------------------------

    def pace(self, now: float, free_agents: Sequence[str], *, open: bool = True) -> list[Dial]:
        """The dials to place now, given the agents free now; nothing when the schedule is closed."""
        free = list(dict.fromkeys(free_agents))
        self._observe_free(free, now)
        mode = self.settings.mode
        if not open or mode is Mode.PREVIEW:
            return []
        available = [a for a in free if a not in self._reserved and a not in self._previews]
        if mode is Mode.PROGRESSIVE:
            dials = []
            for agent in available:
                rec = self._next_due(now)
                if rec is None:
                    break
                dials.append(self._dial(rec, now, agent))
            idle = [a for a in free if a not in self._previews]
            if idle:
                self._note_lines(sum(1 for a in idle if a in self._reserved), len(idle))
            return dials
        ringing = self._unreserved[_RINGING]
        k = len(available) - self._unreserved[_WAITING]
        if k <= 0:
            return []
        new = self._predictive_new_lines(k, ringing, now)
        dials = []
        for _ in range(new):
            rec = self._next_due(now)
            if rec is None:
                break
            dials.append(self._dial(rec, now, None))
        self._note_lines(ringing + len(dials), k)
        return dials

    def _predictive_new_lines(self, k: int, n0: int, now: float) -> int:
        s = self.settings
        c = s.abandon_ceiling
        self._advance(now)
        if not self.trusted():
            self._target, self._soon_share = c, 1.0
            return max(0, k - n0)
        p = min(1.0, max(1e-3, self.answer_rate()))
        control = self._control()
        target = self._target = min(c, max(0.0, control))
        # Below a zero target the controller's remaining authority is the agents counted as about to be free.
        self._soon_share = 1.0 if control >= 0 else max(0.0, 1.0 + control / c) if c > 0 else 0.0
        busy_n, q = self._soon_free(now)
        q *= self._soon_share
        cap = math.floor(s.max_lines_per_agent * (k + busy_n * q) + 1e-9)
        if n0 >= cap:
            return 0
        y_lo, y_pmf = _binomial_window(busy_n, q)

        def ok(n: int) -> bool:
            return _expected_excess(n, p, k, y_lo, y_pmf) <= target * n * p + 1e-12

        good = max(n0, min(k, cap))  # n <= k lines can never leave an answered call without an agent
        step = 1
        bad = None
        while good < cap:
            n = min(good + step, cap)
            if ok(n):
                good = n
                step *= 2
            else:
                bad = n
                break
        if bad is not None:
            while bad - good > 1:
                mid = (good + bad) // 2
                if ok(mid):
                    good = mid
                else:
                    bad = mid
        return good - n0

    def _soon_free(self, now: float) -> tuple[int, float]:
        """Agents busy on our calls, and the chance that one of them is free within the pacing horizon."""
        talking, wrapping = len(self._talk.members), len(self._wrap.members)
        busy_n = talking + wrapping
        if not busy_n:
            return 0, 0.0
        horizon = self.horizon()
        a = 1.0 / max(1e-9, self._talk.mean(now))
        b = 1.0 / max(1e-9, self._wrap.mean(now))
        # Talking agents need the rest of the talk then a wrap-up: P(Exp(a) + Exp(b) <= horizon).
        if abs(a - b) < 1e-9 * b:
            q_talk = 1.0 - (1.0 + a * horizon) * math.exp(-a * horizon)
        else:
            q_talk = 1.0 - (b * math.exp(-a * horizon) - a * math.exp(-b * horizon)) / (b - a)
        q_wrap = 1.0 - math.exp(-b * horizon)
        return busy_n, (talking * q_talk + wrapping * q_wrap) / busy_n

    def horizon(self) -> float:
        """Seconds ahead in which freed agents are counted: the mean time from dial to 200 OK."""
        return self._delays.mean(self.settings.default_answer_delay)

    def _control(self) -> float:
        """PI output: the ceiling less Kp * (recent - setpoint) less the excess over the setpoint's budget / payback."""
        s = self.settings
        c = s.abandon_ceiling
        if not self._recent_abandons:
            return c
        aim = c * s.abandon_setpoint
        recent = self._recent_sum / len(self._recent_abandons)
        # Anti-windup: a campaign well under its budget banks at most c of headroom, so a burst still tightens.
        excess = max(self._abandoned - aim * self._resolved_answers, -c * s.payback)
        return c - s.abandon_gain * (recent - aim) - excess / max(1, s.payback)

    def abandon_target(self) -> float:
        """The abandonment target pacing aims at: the ceiling, tightened while measured abandonment exceeds it."""
        if not self.trusted():
            return self.settings.abandon_ceiling
        return min(self.settings.abandon_ceiling, max(0.0, self._control()))

    def trusted(self) -> bool:
        """Whether enough answered calls have been measured (`min_samples`) for predictive pacing."""
        return self._sampled_answers >= self.settings.min_samples

    def answer_rate(self) -> float:
        """Measured answer probability over the sliding window, or the default before `min_samples` answers."""
        if not self.trusted() or not self._outcomes:
            return self.settings.default_answer_rate
        return self._outcomes_sum / len(self._outcomes)

    def _note_lines(self, lines: int, agents: int) -> None:
        self._lines_per_agent = lines / agents
        self._lpa_sum += self._lines_per_agent
        self._lpa_n += 1

    def _observe_free(self, free: list[str], now: float) -> None:
        # An agent listed free has left their call on our campaign; from the end of the call to here is wrap-up.
        if not (self._talk.members or self._wrap.members):
            return
        for agent in free:
            spent = self._wrap.leave(agent, now)
            if spent is not None:
                self._wraps.add(max(0.0, spent))
            elif self._talk.leave(agent, now) is not None:
                # freed without the end of their call being reported: forget the call
                for rid, (who, _) in list(self._talking.items()):
                    if who == agent:
                        del self._talking[rid]

    def _advance(self, now: float) -> None:
        """Move attempts whose outcome (and every earlier one's) is known into the measurement windows."""
        cohort = self._cohort
        limit = self.settings.ring_timeout
        while cohort:
            att = cohort[0]
            if att.skipped:
                cohort.popleft()
                continue
            if att.answered_at is not None:
                outcome = 1
                self._sampled_answers += 1
                self._delays.add(max(0.0, att.answered_at - att.dialled_at))
            elif att.resolved or now - att.dialled_at > limit:
                outcome = 0  # ended unanswered, or rang longer than any answered call would
            else:
                return
            cohort.popleft()
            if len(self._outcomes) == self._outcomes.maxlen:
                self._outcomes_sum -= self._outcomes[0]
            self._outcomes.append(outcome)
            self._outcomes_sum += outcome

    # ---- results ---------------------------------------------------------------------------------

    def dial_result(self, record_id: str, result: Result | str, now: float, *, agent: str = "") -> Record:
        """Record the final result of the record's attempt in flight and schedule what comes next."""
        result = Result(result)
        rec = self._records[record_id]
        att = self._flight.pop(record_id, None)
        if att is None:
            if result is Result.SKIPPED and rec.state is RecordState.PREVIEWING:
                return self.preview_skip(rec.agent, record_id, now)
            raise ValueError(f"record {record_id} has no dial in flight")
        if att.agent is None:
            self._unreserved[att.status()] -= 1
        att.resolved = True
        if att.agent is not None and self._reserved.get(att.agent) == record_id:
            del self._reserved[att.agent]
        if agent:
            rec.agent = agent
        rec.last_result = result.value
        self._results[result] += 1
        if result is Result.SKIPPED:
            # The call was never placed: it does not count as an attempt, nor in the measurements.
            att.skipped = True
            rec.attempts -= 1
            self._attempts -= 1
            if rec.state is RecordState.DIALLING:
                self._requeue_after_skip(rec, now)
            self._advance(now)
            return rec
        if result in (Result.CONNECTED, Result.ABANDONED) and att.answered_at is None:
            self._mark_answered(att, now)
        self._completed += 1
        if result is Result.CONNECTED:
            self._connected += 1
        if att.answered_at is not None and result in (Result.CONNECTED, Result.ABANDONED):
            self._resolved_answers += 1
            if len(self._recent_abandons) == self._recent_abandons.maxlen:
                self._recent_sum -= self._recent_abandons[0]
            abandoned = 1 if result is Result.ABANDONED else 0
            self._recent_abandons.append(abandoned)
            self._recent_sum += abandoned
            if result is Result.ABANDONED:
                self._abandoned += 1
        self._advance(now)
        if rec.state is not RecordState.DIALLING:
            return rec  # blocked (DNC) while in flight: the result is kept, the record stays DNC
        if result is Result.CONNECTED:
            self._set_state(rec, RecordState.DONE)
        elif rec.attempts >= self.settings.max_attempts:
            self._set_state(rec, RecordState.FAILED)
        else:
            delay = self.settings.retry_delays.get(result.value, DEFAULT_RETRY_DELAYS.get(result.value, 0.0))
            rec.next_at = now + delay
            self._set_state(rec, RecordState.RETRY)
            self._enqueue(rec)
        return rec

    def answered(self, record_id: str, now: float) -> None:
        """The callee answered (200 OK): feeds the measured answer rate and answer delay."""
        att = self._flight.get(record_id)
        if att is not None and att.answered_at is None:
            self._mark_answered(att, now)
            self._advance(now)

    def connected(self, record_id: str, agent: str, now: float) -> None:
        """The answered call was bridged to `agent`: the handle time starts."""
        rec = self._records[record_id]
        rec.agent = agent
        att = self._flight.get(record_id)
        if att is not None:
            if att.answered_at is None:
                self._mark_answered(att, now)
            if att.agent is None:
                self._unreserved[att.status()] -= 1
            att.connected = True
            if att.agent is None:
                self._unreserved[att.status()] += 1
        self._talking[record_id] = (agent, now)
        self._wrap.leave(agent, now, completed=False)
        self._talk.enter(agent, now)

    def handle_ended(self, record_id: str, now: float) -> None:
        """The agent's call on this record ended: feeds the measured handle time (unknown records are ignored)."""
        talk = self._talking.pop(record_id, None)
        if talk is None:
            return
        agent, since = talk
        self._handles.add(max(0.0, now - since))
        if self._talk.leave(agent, now) is not None:
            self._wrap.enter(agent, now)

    def _mark_answered(self, att: _Attempt, now: float) -> None:
        if att.agent is None:
            self._unreserved[att.status()] -= 1
        att.answered_at = now
        self._answered += 1
        if att.agent is None:
            self._unreserved[att.status()] += 1

    # ---- preview ---------------------------------------------------------------------------------

    def preview_next(self, agent: str, now: float) -> Record | None:
        """Reserve the next due record for `agent` to preview (the same one again if they already hold one)."""
        held = self._previews.get(agent)
        if held is not None:
            return self._records[held]
        rec = self._next_due(now)
        if rec is None:
            return None
        self._preview_seq[rec.id] = self._last_seq
        self._set_state(rec, RecordState.PREVIEWING)
        rec.agent = agent
        self._previews[agent] = rec.id
        return rec

    def preview_dial(self, agent: str, record_id: str, now: float) -> Dial:
        """The agent clicked dial on their previewed record; ValueError if they do not hold it or are on a dial."""
        self._check_preview(agent, record_id)
        if agent in self._reserved:
            raise ValueError(f"agent {agent} already has a dial in flight ({self._reserved[agent]})")
        del self._previews[agent]
        self._preview_seq.pop(record_id, None)
        return self._dial(self._records[record_id], now, agent)

    def preview_skip(self, agent: str, record_id: str, now: float) -> Record:
        """The agent passed over their previewed record: it is due again after the others, no attempt counted."""
        self._check_preview(agent, record_id)
        del self._previews[agent]
        self._preview_seq.pop(record_id, None)
        rec = self._records[record_id]
        rec.last_result = Result.SKIPPED.value
        self._results[Result.SKIPPED] += 1
        self._requeue_after_skip(rec, now)
        return rec

    def release(self, agent: str, now: float) -> str | None:
        """The agent logged out: a record they were previewing is due again in its old place.
        Returns that record's id, if they held one."""
        rid = self._previews.pop(agent, None)
        if rid is not None:
            rec = self._records[rid]
            rec.agent = ""
            self._set_state(rec, RecordState.PENDING)
            self._enqueue(rec, self._preview_seq.pop(rid, None))
        # A logged-out agent will not be free soon for our calls.
        self._talk.leave(agent, now, completed=False)
        self._wrap.leave(agent, now, completed=False)
        return rid

    def _check_preview(self, agent: str, record_id: str) -> None:
        if self._previews.get(agent) != record_id:
            raise ValueError(f"record {record_id} is not reserved for agent {agent}")

    def _requeue_after_skip(self, rec: Record, now: float) -> None:
        rec.agent = ""
        rec.next_at = now
        self._set_state(rec, RecordState.PENDING)
        self._enqueue(rec)

    # ---- internals -------------------------------------------------------------------------------

    def _is_blocked(self, number: str) -> bool:
        return number in self._blocked or bool(self._dnc(number))

    def _set_state(self, rec: Record, state: RecordState) -> None:
        self._counts[rec.state] -= 1
        self._counts[state] += 1
        rec.state = state

    def _enqueue(self, rec: Record, seq: int | None = None) -> None:
        if seq is None:
            seq = next(self._seq)
        self._queued[rec.id] = seq
        heap = self._pending if rec.state is RecordState.PENDING else self._retry
        heapq.heappush(heap, (rec.next_at, seq, rec.id))

    def _live_top(self, heap: list[tuple[float, int, str]]) -> tuple[float, int, str] | None:
        """The first entry of `heap` that still stands for its record (stale entries are dropped)."""
        queued = self._queued
        while heap and queued.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _promote(self, now: float) -> None:
        """Move retries whose time has come to the due line."""
        retry = self._retry
        while True:
            top = self._live_top(retry)
            if top is None or top[0] > now:
                return
            heapq.heappush(self._due_retry, heapq.heappop(retry))

    def _next_due(self, now: float) -> Record | None:
        """Take the first due record off the lines (numbers found on the DNC list meanwhile become DNC)."""
        self._promote(now)
        while True:
            best = self._live_top(self._pending)
            retry = self._live_top(self._due_retry)
            if retry is not None and (best is None or retry < best):
                best = heapq.heappop(self._due_retry)
            elif best is not None:
                heapq.heappop(self._pending)
            else:
                return None
            rec = self._records[best[2]]
            del self._queued[rec.id]
            self._last_seq = best[1]
            if self._is_blocked(rec.number):
                self._set_state(rec, RecordState.DNC)
                continue
            return rec

    def _dial(self, rec: Record, now: float, agent: str | None) -> Dial:
        rec.attempts += 1
        self._attempts += 1
        if agent is not None:
            rec.agent = agent
            self._reserved[agent] = rec.id
        self._set_state(rec, RecordState.DIALLING)
        att = _Attempt(dialled_at=now, agent=agent)
        self._flight[rec.id] = att
        if agent is None:
            self._unreserved[_RINGING] += 1
        self._cohort.append(att)
        return Dial(rec.id, rec.number, rec.attempts, agent)

    # ---- statistics ------------------------------------------------------------------------------

    def stats(self, now: float) -> dict[str, object]:
        """Counts by state (flat and under "states"), attempts, outcomes, measured rates and pacing figures."""
        states = {s.value: n for s, n in self._counts.items()}
        self._promote(now)
        due = self._counts[RecordState.PENDING] + sum(
            1 for _, seq, rid in self._due_retry if self._queued.get(rid) == seq)
        self._advance(now)
        return {
            "campaign": self.campaign,
            "mode": self.settings.mode.value,
            "records": len(self._records),
            **states,
            "states": states,
            "due": due,
            "attempts": self._attempts,
            "completed_attempts": self._completed,
            "in_flight": len(self._flight),
            "answered": self._answered,
            "connected": self._connected,
            "abandoned": self._abandoned,
            "results": {r.value: n for r, n in self._results.items()},
            "abandon_rate": self._abandoned / self._answered if self._answered else 0.0,
            "answer_rate": self._answered / self._completed if self._completed else 0.0,
            "measured_answer_rate": self.answer_rate(),
            "handle_time": self._handles.mean(0.0) if len(self._handles) else None,
            "wrap_up_time": self._wraps.mean(0.0) if len(self._wraps) else None,
            "answer_delay": self._delays.mean(0.0) if len(self._delays) else None,
            "lines_per_agent": self._lines_per_agent,
            "mean_lines_per_agent": self._lpa_sum / self._lpa_n if self._lpa_n else 0.0,
            "abandon_target": self._target,
            "busy_agents": len(self._talk.members) + len(self._wrap.members),
        }


def _binomial_window(n: int, p: float) -> tuple[int, list[float]]:
    """(lo, [P(X=lo), P(X=lo+1), ...]) for X ~ Binomial(n, p), within 10 standard deviations of the mean."""
    if n <= 0 or p <= 0.0:
        return 0, [1.0]
    if p >= 1.0:
        return n, [1.0]
    mean = n * p
    spread = 10.0 * math.sqrt(mean * (1.0 - p)) + 3.0
    lo = max(0, int(mean - spread))
    hi = min(n, int(mean + spread) + 1)
    v = math.exp(math.lgamma(n + 1) - math.lgamma(lo + 1) - math.lgamma(n - lo + 1)
                 + lo * math.log(p) + (n - lo) * math.log1p(-p))
    odds = p / (1.0 - p)
    out = [v]
    append = out.append
    for j in range(lo, hi):
        v *= (n - j) / (j + 1) * odds
        append(v)
    return lo, out


def _expected_excess(n: int, p: float, k: int, y_lo: int, y_pmf: list[float]) -> float:
    """E[max(0, X - k - Y)] for X ~ Binomial(n, p) and Y given by its window (y_lo, y_pmf)."""
    x_lo, x_pmf = _binomial_window(n, p)
    x_hi = x_lo + len(x_pmf) - 1
    m_lo = k + y_lo
    if m_lo >= x_hi:
        return 0.0  # even the fewest agents cover the most answers the window holds
    # Suffix sums over the answers X > m for every threshold m the agents can take.
    start = max(0, m_lo + 1 - x_lo)
    size = len(x_pmf)
    s0 = [0.0] * (size + 1)
    s1 = [0.0] * (size + 1)
    a0 = a1 = 0.0
    for i in range(size - 1, start - 1, -1):
        w = x_pmf[i]
        a0 += w
        a1 += w * (x_lo + i)
        s0[i] = a0
        s1[i] = a1
    mean = n * p
    total = 0.0
    m = m_lo
    for py in y_pmf:
        if m >= x_hi:
            break
        if m < x_lo:
            g = mean - m  # X > m almost surely
        else:
            i = m + 1 - x_lo
            g = s1[i] - m * s0[i]
        total += py * g
        m += 1
    return total
