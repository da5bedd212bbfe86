"""The sans-IO dialplan interpreter: steps in, commands for the call out, results back in.

Each call gets one `Interpreter`. `start(now)` returns the first commands; whenever the call layer
has a result (playback done, digits, a dial or queue outcome, an HTTP answer) it calls
`feed(result, now)` and executes the commands returned. If `deadline` is set, the call layer feeds
`Timeout()` once that time has passed. No clock is read and nothing blocks here.

Internally each step is a generator that yields what it waits for, which keeps nested steps (menus
inside hours inside if) as plain code; `goto` unwinds the generators with an exception.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from softswitch.dialplan import commands as c
from softswitch.dialplan.callback_time import CallbackTimeError, due_at, due_in, local_time
from softswitch.dialplan.model import (
    AnswerStep,
    BookCallbackStep,
    Condition,
    Dialplan,
    DialStep,
    GatherStep,
    GotoStep,
    HangupStep,
    HoursStep,
    HttpStep,
    IfStep,
    MenuStep,
    PlayStep,
    Prompt,
    QueueStep,
    RecordStep,
    Route,
    RouteMatch,
    SayStep,
    SetStep,
    StepBase,
    TransferStep,
    VoicemailStep,
)

log = logging.getLogger(__name__)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str, variables: dict[str, str], *, url: bool = False) -> str:
    """Replace `${name}` with the variable's value ('' when unset); URL-encode values when `url`."""

    def sub(m: re.Match[str]) -> str:
        value = variables.get(m.group(1), "")
        return quote(value, safe="") if url else value

    return _VAR.sub(sub, text)


@dataclass(frozen=True, slots=True)
class _Wait:
    accepts: tuple[type[c.Result], ...]
    deadline: float | None = None


class _Goto(Exception):
    def __init__(self, target: str) -> None:
        self.target = target


class _Done(Exception):
    def __init__(self, outcome: str) -> None:
        self.outcome = outcome


class _StepLimit(Exception):
    pass


Runner = Generator[_Wait, c.Result, None]


class Interpreter:
    """Runs one route of a dialplan for one call.

    `finished` turns True when the plan is over; `outcome` then says how (completed, bridged,
    transferred, hangup, caller_hangup, abandoned, step_limit).
    """

    def __init__(self, plan: Dialplan, route: Route | RouteMatch, variables: dict[str, str] | None = None, *,
                 prompts_dir: Path | None = None) -> None:
        if isinstance(route, RouteMatch):
            base = dict(route.variables)
            route = route.route
        else:
            base = dict(plan.variables)
        base.update(variables or {})
        self.plan = plan
        self.route = route
        self.variables: dict[str, str] = base
        self.prompts_dir = prompts_dir
        self.finished = False
        self.outcome = ""
        self.deadline: float | None = None
        self.steps_run = 0
        self._since_input = 0
        self._now = 0.0
        self._out: list[c.Command] = []
        self._wait: _Wait | None = None
        self._owner: list[Any] = route.steps
        self._gen: Runner = self._main()
        self._started = False

    # --- public API -----------------------------------------------------------------------------

    def start(self, now: float) -> list[c.Command]:
        """Begin the route; returns the first commands."""
        if self._started:
            raise RuntimeError("interpreter already started")
        self._started = True
        self._now = now
        return self._advance(None)

    def feed(self, result: c.Result, now: float) -> list[c.Command]:
        """Deliver a result; returns the next commands (none when the result was not awaited)."""
        if self.finished or not self._started:
            return []
        self._now = now
        if isinstance(result, c.CallerHangup):
            self._gen.close()
            self._finish("caller_hangup")
            return []
        wait = self._wait
        if wait is None:
            return []
        if isinstance(result, c.Timeout):
            if c.Timeout not in wait.accepts or (wait.deadline is not None and now < wait.deadline):
                return []  # nothing to time out, or fed early
        elif not isinstance(result, wait.accepts):
            return []  # a stray result (e.g. PlaybackDone while collecting menu digits)
        self._since_input = 0
        return self._advance(result)

    # --- driving the generators -----------------------------------------------------------------

    def _advance(self, value: c.Result | None) -> list[c.Command]:
        try:
            self._wait = self._gen.send(value)  # type: ignore[arg-type]
            self.deadline = self._wait.deadline
        except StopIteration:
            self._wait = None
            self.deadline = None
        except Exception:
            # a plan built in code and never checked (say, a missing calendar) must fail one call, not the node
            log.exception("dialplan step failed in route %r", self.route.name)
            self._out.append(c.Hangup("dialplan_error"))
            self._finish("error")
        out, self._out = self._out, []
        return out

    def _finish(self, outcome: str) -> None:
        self.finished = True
        self.outcome = outcome
        self._wait = None
        self.deadline = None

    def _emit(self, *cmds: c.Command) -> None:
        self._out.extend(cmds)

    def _main(self) -> Runner:
        steps: list[Any] = self.route.steps
        start = 0
        while True:
            try:
                yield from self._run(steps[start:])
                self._emit(c.Hangup("normal_clearing"))
                self._finish("completed")
                return
            except _Goto as g:
                found = self._resolve(g.target)
                if found is None:  # the checker rejects unknown targets; plans built in code may not be checked
                    self._emit(c.Hangup("dialplan_error"))
                    self._finish("error")
                    return
                steps, start = found
            except _Done as d:
                self._finish(d.outcome)
                return
            except _StepLimit:
                self._emit(c.Hangup("loop_detected"))
                self._finish("step_limit")
                return

    def _resolve(self, target: str) -> tuple[list[Any], int] | None:
        for i, step in enumerate(self._owner):
            if step.label == target:
                return self._owner, i
        block = self.plan.blocks.get(target)
        if block is not None:
            self._owner = block
            return block, 0
        return None

    def _run(self, steps: list[Any]) -> Runner:
        for step in steps:
            self.steps_run += 1
            self._since_input += 1
            if self._since_input > self.plan.max_steps:
                raise _StepLimit
            yield from self._step(step)

    # --- steps ----------------------------------------------------------------------------------

    def _step(self, step: StepBase) -> Runner:
        v = self.variables
        if isinstance(step, AnswerStep):
            self._emit(c.Answer())
            v["answered"] = "1"
        elif isinstance(step, PlayStep):
            self._emit(c.Play(self._path(step.play)))
            yield _Wait((c.PlaybackDone,))
        elif isinstance(step, SayStep):
            s = step.say
            self._emit(c.Say(expand(s.text, v), s.lang, s.voice))
            yield _Wait((c.PlaybackDone,))
        elif isinstance(step, MenuStep):
            yield from self._menu(step)
        elif isinstance(step, GatherStep):
            g = step.gather
            if g.prompt is not None:
                self._emit(self._prompt(g.prompt, barge_in=True))
            self._emit(c.CollectDigits(g.max_digits, g.timeout, g.terminator))
            got = yield _Wait((c.DigitsCollected, c.Timeout))
            digits = got.digits if isinstance(got, c.DigitsCollected) else ""
            v[g.into] = digits if len(digits) >= g.min_digits else ""
        elif isinstance(step, DialStep):
            yield from self._dial(step)
        elif isinstance(step, QueueStep):
            q = step.queue
            passed = {k: v[k] for k in ("customer_id", "vip", "last_agent", "caller") if v.get(k)}
            self._emit(c.EnqueueAcd(q.name, dict(q.skills), q.priority, q.max_wait, q.max_waiting, passed))
            res = yield _Wait((c.QueueResult,))
            assert isinstance(res, c.QueueResult)
            v["queue_result"] = res.outcome
            if res.outcome == "answered":
                v["agent"] = res.agent
                raise _Done("bridged")
            if res.outcome == "abandoned":
                raise _Done("abandoned")
            yield from self._run(q.on_overflow)
        elif isinstance(step, TransferStep):
            t = step.transfer
            self._emit(c.Transfer(expand(t.to, v), t.trunk))
            raise _Done("transferred")
        elif isinstance(step, RecordStep):
            self._emit(c.StartRecording() if step.record.action == "start" else c.StopRecording())
        elif isinstance(step, VoicemailStep):
            vm = step.voicemail
            if vm.greeting is not None:
                self._emit(self._prompt(vm.greeting))
                yield _Wait((c.PlaybackDone,))
            box = expand(vm.box, v)
            self._emit(c.RecordVoicemail(box, vm.max_seconds, vm.beep))
            rec = yield _Wait((c.VoicemailRecorded,))
            assert isinstance(rec, c.VoicemailRecorded)
            v["voicemail_path"] = rec.path
            self._emit(c.Publish(c.VoicemailLeft(ts=self._now, box=box, caller=v.get("caller", ""), path=rec.path,
                                                 duration=rec.duration, call_uuid=v.get("call_uuid", ""))))
        elif isinstance(step, SetStep):
            for name, value in step.set.items():
                v[name] = expand(value, v)
        elif isinstance(step, GotoStep):
            raise _Goto(expand(step.goto, v))
        elif isinstance(step, IfStep):
            branch = step.if_.then if evaluate(step.if_.when, v) else step.if_.else_
            yield from self._run(branch)
        elif isinstance(step, HoursStep):
            h = step.hours
            state = self.plan.calendars[h.calendar].state(self._now)
            v["hours_state"] = state
            if state == "open":
                branch = h.open
            elif state == "holiday" and h.holiday is not None:
                branch = h.holiday
            elif state == "closure" and h.closure is not None:
                branch = h.closure
            else:
                branch = h.closed
            yield from self._run(branch)
        elif isinstance(step, HttpStep):
            yield from self._http(step)
        elif isinstance(step, BookCallbackStep):
            yield from self._book_callback(step)
        elif isinstance(step, HangupStep):
            self._emit(c.Hangup(step.hangup or "normal_clearing"))
            raise _Done("hangup")

    def _menu(self, step: MenuStep) -> Runner:
        m = step.menu
        v = self.variables
        for attempt in range(1, m.retries + 1):
            v["menu_attempt"] = str(attempt)
            self._emit(self._prompt(m.prompt, barge_in=True),
                       c.CollectDigits(m.max_digits, m.timeout, "#" if m.max_digits > 1 else ""))
            got = yield _Wait((c.DigitsCollected, c.Timeout))
            digits = got.digits if isinstance(got, c.DigitsCollected) else ""
            if digits in m.options:
                v["menu_choice"] = digits
                yield from self._run(m.options[digits])
                return
            sorry = (m.no_input or m.invalid) if digits == "" else m.invalid
            if sorry is not None and attempt < m.retries:
                self._emit(self._prompt(sorry))
                yield _Wait((c.PlaybackDone,))
        v["menu_choice"] = ""
        yield from self._run(m.on_failure)

    def _dial(self, step: DialStep) -> Runner:
        d = step.dial
        v = self.variables
        targets = [c.DialTarget("user", expand(u, v)) for u in d.users]
        strategy, timeout = d.strategy, d.timeout
        if d.group is not None:
            group = self.plan.ring_groups[d.group]
            targets += [c.DialTarget("user", u) for u in group.members]
            strategy = strategy or group.strategy
            if "timeout" not in d.model_fields_set:
                timeout = group.timeout
        if d.number is not None:
            targets.append(c.DialTarget("external", expand(d.number, v), d.trunk))
        cid = expand(d.caller_id, v) if d.caller_id else None
        self._emit(c.Dial(tuple(targets), strategy or "ring_all", timeout, cid))
        res = yield _Wait((c.DialResult,))
        assert isinstance(res, c.DialResult)
        v["dial_status"] = res.status
        if res.status == "answered":
            v["answered_by"] = res.answered_by
            raise _Done("bridged")

    def _http(self, step: HttpStep) -> Runner:
        h = step.http
        v = self.variables
        body = {k: expand(x, v) for k, x in h.body.items()} if h.body is not None else None
        self._emit(c.HttpLookup(expand(h.url, v, url=True), h.timeout, h.method, body))
        res = yield _Wait((c.HttpResult, c.Timeout), deadline=self._now + h.timeout)
        if isinstance(res, c.HttpResult) and 200 <= res.status < 300:
            v["http_status"] = str(res.status)
            for name, path in h.set.items():
                v[name] = _json_text(_dig(res.json, path))
            return
        v["http_status"] = str(res.status) if isinstance(res, c.HttpResult) else "timeout"
        for name in h.set:
            v.setdefault(name, "")
        yield from self._run(h.on_error)

    def _book_callback(self, step: BookCallbackStep) -> Runner:
        b = step.book_callback
        v = self.variables
        for name in ("callback_id", "callback_due", "callback_date", "callback_time"):
            v[name] = ""
        calendar = self.plan.calendars[b.calendar] if b.calendar is not None else None
        zone = calendar.timezone if calendar is not None else b.timezone
        status, error = "booked", ""
        try:
            if b.at is not None:
                due = due_at(expand(b.at, v), self._now, zone)
            else:
                due = due_in(expand(b.in_minutes or "", v), self._now)
        except CallbackTimeError as exc:
            status, error = "bad_time", str(exc)
        else:
            v["callback_date"], v["callback_time"] = local_time(due, zone)
            number = expand(b.number, v).strip()
            if calendar is not None and not calendar.is_open(due):
                status, error = "closed", f"calendar {b.calendar!r} is closed on {v['callback_date']} at {v['callback_time']}"
            elif not number:
                status, error = "no_number", "no number to call back (the caller's number is unknown)"
            else:
                self._emit(c.BookCallback(number, due, b.queue, expand(b.agent, v).strip(),
                                          expand(b.customer_id, v), expand(b.note, v)))
                res = yield _Wait((c.CallbackBooked,))
                assert isinstance(res, c.CallbackBooked)
                if res.ok:
                    due = res.due or due
                    v["callback_id"], v["callback_due"] = res.id, str(int(due))
                    v["callback_date"], v["callback_time"] = local_time(due, zone)
                else:
                    status, error = "failed", res.error or "the callback could not be booked"
        v["callback_status"], v["callback_error"] = status, error
        if status != "booked":
            yield from self._run(b.on_error)
        elif b.confirm is not None:
            self._emit(c.Say(expand(b.confirm.text, v), b.confirm.lang, b.confirm.voice))
            yield _Wait((c.PlaybackDone,))

    # --- helpers --------------------------------------------------------------------------------

    def _path(self, file: str) -> str:
        name = expand(file, self.variables)
        if self.prompts_dir is None or Path(name).is_absolute():
            return name
        return str(self.prompts_dir / name)

    def _prompt(self, p: Prompt, *, barge_in: bool = False) -> c.Command:
        if p.file is not None:
            return c.Play(self._path(p.file), barge_in=barge_in)
        return c.Say(expand(p.say or "", self.variables), p.lang, p.voice, barge_in=barge_in)


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evaluate(cond: Condition, variables: dict[str, str]) -> bool:
    """Whether a condition holds for the variables."""
    if cond.all is not None:
        return all(evaluate(x, variables) for x in cond.all)
    if cond.any is not None:
        return any(evaluate(x, variables) for x in cond.any)
    if cond.not_ is not None:
        return not evaluate(cond.not_, variables)
    value = variables.get(cond.var or "", "")
    if cond.eq is not None:
        return value == expand(cond.eq, variables)
    if cond.ne is not None:
        return value != expand(cond.ne, variables)
    if cond.in_ is not None:
        return value in [expand(x, variables) for x in cond.in_]
    if cond.matches is not None:
        return re.search(cond.matches, value) is not None
    if cond.empty is not None:
        return (value == "") == cond.empty
    try:
        number = float(value)
    except ValueError:
        return False
    if cond.gt is not None:
        return number > cond.gt
    if cond.lt is not None:
        return number < cond.lt
    return False  # pragma: no cover - the model requires one test
