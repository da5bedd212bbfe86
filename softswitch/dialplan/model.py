"""The dialplan language as pydantic models: contexts, routes, matches and steps.

A step is a one-key mapping named after what it does (``- play: hello.wav``, ``- queue: orders``),
optionally with a ``label`` that ``goto`` can jump to. Many steps accept a short scalar form as well
as the full mapping; the models normalise both to the full form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from softswitch.dialplan.calendar import Calendar
from softswitch.dialplan.callback_time import CallbackTimeError, due_in, parse_time_of_day
from softswitch.dialplan.patterns import NumberPattern, PatternError, compile_pattern
from softswitch.yamlconf import did_you_mean

_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _as(field_name: str, model: type[BaseModel]) -> BeforeValidator:
    """Accept a scalar shorthand for `model` by putting it into `field_name` (the schema says so too)."""

    def convert(v: object) -> object:
        if isinstance(v, str | int | float) and not isinstance(v, bool):
            return {field_name: str(v)}
        return v

    return BeforeValidator(convert, json_schema_input_type=str | model)


def as_text(v: object) -> str:
    """A YAML scalar as a variable value: null is '', booleans are 'true'/'false' (as JSON writes them)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


Text = Annotated[str, BeforeValidator(as_text)]


def _var_name(v: str) -> str:
    if not _VAR_NAME.match(v):
        raise PydanticCustomError("var_name", "bad variable name '{name}'",
                                  {"name": v, "hint": "letters, digits and _, not starting with a digit"})
    return v


VarName = Annotated[str, BeforeValidator(lambda v: _var_name(str(v)) if v is not None else v)]


class Prompt(_Strict):
    """Something to play: a prompt file (under the prompts folder) or TTS text. A plain string is a file."""

    file: str | None = None
    say: str | None = None
    lang: str = "ja"
    voice: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> Prompt:
        if (self.file is None) == (self.say is None):
            raise PydanticCustomError("prompt", "a prompt needs exactly one of 'file' or 'say'",
                                      {"hint": "prompt: welcome.wav  or  prompt: {say: 'お電話ありがとうございます'}"})
        return self


PromptRef = Annotated[Prompt, _as("file", Prompt)]


class StepBase(_Strict):
    """Fields every step may carry."""

    label: str | None = Field(None, description="a name that `goto` can jump to")


class AnswerStep(StepBase):
    """Answer the call (200 OK); later prompts need it."""

    answer: None = Field(description="no arguments: write `- answer:`")


class PlayStep(StepBase):
    """Play a prompt file from the prompts folder."""

    play: str = Field(description="file name under media.prompts_dir, e.g. welcome.wav")


class SaySpec(_Strict):
    """Speak text with TTS; `${var}` is replaced."""

    text: str
    lang: str = "ja"
    voice: str = ""


class SayStep(StepBase):
    say: Annotated[SaySpec, _as("text", SaySpec)]


class MenuSpec(_Strict):
    """An IVR menu: play `prompt`, read digits, run the matching option's steps."""

    prompt: PromptRef
    options: dict[str, list[Step]] = Field(description="digits ('1', '2', '*', '#', '11') -> steps")
    timeout: float = Field(5.0, gt=0, description="seconds to wait for a choice after the prompt")
    retries: int = Field(3, ge=1, description="tries before `on_failure`")
    max_digits: int = Field(1, ge=1, le=20)
    invalid: PromptRef | None = Field(None, description="played after a choice that is not an option")
    no_input: PromptRef | None = Field(None, description="played after a timeout")
    on_failure: list[Step] = Field(default_factory=list, description="after the last retry; then continues")

    @field_validator("options")
    @classmethod
    def _digit_keys(cls, v: dict[str, list[Step]]) -> dict[str, list[Step]]:
        for k in v:
            if not re.fullmatch(r"[0-9*#]{1,20}", k):
                raise PydanticCustomError("menu_option", "menu option '{key}' is not digits",
                                          {"key": k, "hint": "keys are DTMF digits: 0-9, * and #, quoted"})
        return v


class MenuStep(StepBase):
    menu: MenuSpec


class GatherSpec(_Strict):
    """Read digits into a variable ('' when nothing was entered)."""

    into: VarName
    prompt: PromptRef | None = None
    max_digits: int = Field(20, ge=1, le=64)
    min_digits: int = Field(1, ge=0)
    timeout: float = Field(5.0, gt=0)
    terminator: str = Field("#", pattern=r"^[#*]?$")


class GatherStep(StepBase):
    gather: GatherSpec


class DialSpec(_Strict):
    """Ring users, a ring group or an external number; sets `${dial_status}` and continues unless answered."""

    users: list[str] = Field(default_factory=list)
    group: str | None = Field(None, description="a ring group from `ring_groups`")
    number: str | None = Field(None, description="an external number (variables allowed)")
    trunk: str | None = Field(None, description="the trunk for `number`; default: chosen by trunk prefixes")
    strategy: Literal["ring_all", "sequential", "round_robin", "random"] | None = None
    timeout: float = Field(30.0, gt=0)
    caller_id: str | None = None

    @field_validator("users", mode="before")
    @classmethod
    def _one_user(cls, v: object) -> object:
        return [v] if isinstance(v, str | int) else v

    @model_validator(mode="after")
    def _has_target(self) -> DialSpec:
        if not self.users and not self.group and not self.number:
            raise PydanticCustomError("dial", "dial needs 'users', 'group' or 'number'",
                                      {"hint": "dial: {users: ['1001']}"})
        return self


class DialStep(StepBase):
    dial: Annotated[DialSpec, _as("number", DialSpec)]


class QueueSpec(_Strict):
    """Put the caller in an ACD queue.

    `max_wait` and `max_waiting` travel to the ACD, which ends the wait with an outcome. When the
    outcome is overflow, timeout, full or no_agents, `on_overflow` runs and the plan continues;
    answered and abandoned end the plan. `${queue_result}` holds the outcome.
    """

    name: str
    skills: dict[str, Annotated[int, Field(ge=1, le=10)]] = Field(
        default_factory=dict, description="skill -> minimum proficiency, overriding the queue's")
    priority: int | None = Field(None, description="higher is served first")
    max_wait: float | None = Field(None, gt=0, description="seconds before overflow")
    max_waiting: int | None = Field(None, ge=0, description="overflow at once when this many already wait")
    on_overflow: list[Step] = Field(default_factory=list)


class QueueStep(StepBase):
    queue: Annotated[QueueSpec, _as("name", QueueSpec)]


class TransferSpec(_Strict):
    """Blind transfer to a user or an external number; the dialplan ends."""

    to: str
    trunk: str | None = None


class TransferStep(StepBase):
    transfer: Annotated[TransferSpec, _as("to", TransferSpec)]


class RecordSpec(_Strict):
    action: Literal["start", "stop"]


class RecordStep(StepBase):
    """Start or stop recording the call."""

    record: Annotated[RecordSpec, _as("action", RecordSpec)]


class VoicemailSpec(_Strict):
    """Record a message for a mailbox (a user id) as WAV; an event is published when saved."""

    box: str
    greeting: PromptRef | None = None
    max_seconds: float = Field(120.0, gt=0, le=3600)
    beep: bool = True


class VoicemailStep(StepBase):
    voicemail: Annotated[VoicemailSpec, _as("box", VoicemailSpec)]


class SetStep(StepBase):
    """Set variables; values may use `${other}`."""

    set: dict[VarName, Text]


class GotoStep(StepBase):
    """Jump to a labelled step of the current route or block, or to a block by name."""

    goto: str


class Condition(_Strict):
    """A test on variables: `var` with one comparison, or `all` / `any` / `not` of conditions."""

    var: str | None = None
    eq: str | None = None
    ne: str | None = None
    in_: list[str] | None = Field(None, alias="in")
    gt: float | None = None
    lt: float | None = None
    matches: str | None = Field(None, description="a regular expression searched in the value")
    empty: bool | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(None, alias="not")

    @field_validator("eq", "ne", mode="before")
    @classmethod
    def _text(cls, v: object) -> object:
        return as_text(v) if isinstance(v, bool | int | float) else v

    @field_validator("in_", mode="before")
    @classmethod
    def _texts(cls, v: object) -> object:
        return [as_text(x) for x in v] if isinstance(v, list) else v

    @field_validator("matches")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise PydanticCustomError("regex", "bad regular expression: {err}", {"err": str(exc)}) from None
        return v

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        tests = [x for x in (self.eq, self.ne, self.in_, self.gt, self.lt, self.matches, self.empty) if x is not None]
        groups = [x for x in (self.all, self.any, self.not_) if x is not None]
        if self.var is not None and len(tests) != 1:
            raise PydanticCustomError("condition", "a condition on 'var' needs exactly one test",
                                      {"hint": "one of eq, ne, in, gt, lt, matches, empty"})
        if self.var is None and (tests or len(groups) != 1):
            raise PydanticCustomError("condition", "a condition needs 'var' with a test, or one of all/any/not",
                                      {"hint": "when: {var: vip, eq: '1'}"})
        return self


class IfSpec(_Strict):
    when: Condition
    then: list[Step] = Field(default_factory=list)
    else_: list[Step] = Field(default_factory=list, alias="else")


class IfStep(StepBase):
    """Run `then` when the condition holds, otherwise `else`."""

    if_: IfSpec = Field(alias="if")


class HoursSpec(_Strict):
    """Branch on a business-hours calendar; sets `${hours_state}` (open/closed/holiday/closure)."""

    calendar: str
    open: list[Step] = Field(default_factory=list)
    closed: list[Step] = Field(default_factory=list)
    holiday: list[Step] | None = Field(None, description="default: the `closed` steps")
    closure: list[Step] | None = Field(None, description="default: the `closed` steps")


class HoursStep(StepBase):
    hours: HoursSpec


class HttpSpec(_Strict):
    """A webhook lookup (e.g. a CRM by caller number) filling variables from its JSON answer."""

    url: str = Field(description="variables are URL-encoded when substituted")
    method: Literal["GET", "POST"] = "GET"
    body: dict[str, str] | None = None
    timeout: float = Field(2.0, gt=0, le=30)
    set: dict[VarName, str] = Field(default_factory=dict, description="variable -> dotted path in the JSON")
    on_error: list[Step] = Field(default_factory=list, description="after a timeout or a non-2xx answer")


class HttpStep(StepBase):
    http: HttpSpec


def _static_time(v: str | None, parse: Callable[[str], object], hint: str) -> str | None:
    """Check a time written out in the plan now; one with variables is checked when the call runs."""
    if v is not None and "${" not in v:
        try:
            parse(v)
        except CallbackTimeError as exc:
            raise PydanticCustomError("callback_time", "{err}", {"err": str(exc), "hint": hint}) from None
    return v


# a time or a delay may be written as a YAML number (`in_minutes: 30`)
TimeText = Annotated[str, BeforeValidator(as_text, json_schema_input_type=str | int | float)]


class BookCallbackSpec(_Strict):
    """Book a callback for the caller, offered to `agent` first, then to `queue`.

    `at` is a time of day (today in the zone, tomorrow once past), `in_minutes` a delay. Sets
    `${callback_status}` (booked, bad_time, closed, no_number, failed), `${callback_error}`, and
    `${callback_date}` / `${callback_time}` (local) once the time is understood; once booked also
    `${callback_id}` and `${callback_due}` (epoch s). Booked: `confirm` is said; otherwise `on_error`
    runs; either way the plan continues.
    """

    queue: str = Field(description="the queue whose agents call back")
    at: TimeText | None = Field(None, description="'14', '14:30' or '1430' (24 h); variables allowed, e.g. '${hour}'")
    in_minutes: TimeText | None = Field(None, description="a delay in minutes ('30'); variables allowed")
    number: str = Field("${caller}", description="the number to call back")
    agent: str = Field("", description="offered to this agent first (e.g. '${last_agent}'); empty: the queue")
    customer_id: str = Field("${customer_id}", description="shown on the agent's screen pop")
    note: str = Field("", max_length=500, description="why, shown on the agent's screen pop")
    calendar: str | None = Field(
        None, description="a calendar whose zone `at` is in; a time when it is closed is refused")
    timezone: str = Field("Asia/Tokyo", description="IANA zone of `at` when no calendar is named")
    confirm: Annotated[SaySpec, _as("text", SaySpec)] | None = Field(
        None, description="TTS said once booked, e.g. '${callback_time}ごろにお電話いたします。'")
    on_error: list[Step] = Field(default_factory=list, description="when no callback was booked; then continues")

    @field_validator("at")
    @classmethod
    def _at(cls, v: str | None) -> str | None:
        return _static_time(v, parse_time_of_day, "a time of day on a 24-hour clock: '14', '14:30' or '1430'")

    @field_validator("in_minutes")
    @classmethod
    def _in_minutes(cls, v: str | None) -> str | None:
        return _static_time(v, lambda t: due_in(t, 0.0), "minutes from now, e.g. '30'")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return Calendar._zone_exists(v)

    @model_validator(mode="after")
    def _one_time(self) -> BookCallbackSpec:
        if (self.at is None) == (self.in_minutes is None):
            raise PydanticCustomError("book_callback", "book_callback needs exactly one of 'at' or 'in_minutes'",
                                      {"hint": "book_callback: {queue: support, at: '${hour}'}"})
        if self.calendar is not None and "timezone" in self.model_fields_set:
            raise PydanticCustomError("book_callback", "give 'calendar' or 'timezone', not both",
                                      {"hint": "the calendar's own timezone is used"})
        return self


class BookCallbackStep(StepBase):
    book_callback: BookCallbackSpec


class HangupStep(StepBase):
    """Hang up with a cause (normal_clearing, busy, rejected, unavailable, ...)."""

    hangup: str | None = None


STEP_TYPES: dict[str, type[StepBase]] = {
    "answer": AnswerStep, "play": PlayStep, "say": SayStep, "menu": MenuStep, "gather": GatherStep,
    "dial": DialStep, "queue": QueueStep, "transfer": TransferStep, "record": RecordStep,
    "voicemail": VoicemailStep, "set": SetStep, "goto": GotoStep, "if": IfStep, "hours": HoursStep,
    "http": HttpStep, "book_callback": BookCallbackStep, "hangup": HangupStep,
}


def _step_tag(v: Any) -> str | None:
    if isinstance(v, dict):
        keys = [k for k in v if k != "label"]
        return keys[0] if len(keys) == 1 and keys[0] in STEP_TYPES else None
    for name, cls in STEP_TYPES.items():
        if isinstance(v, cls):
            return name
    return None


def _check_step_shape(v: Any) -> Any:
    if isinstance(v, BaseModel):
        return v
    if not isinstance(v, dict):
        raise PydanticCustomError("step", "a step is a mapping like '- play: welcome.wav'",
                                  {"hint": "steps: " + ", ".join(STEP_TYPES)})
    keys = [k for k in v if k != "label"]
    if not keys:
        raise PydanticCustomError("step", "a step needs a step name", {"hint": "steps: " + ", ".join(STEP_TYPES)})
    unknown = [k for k in keys if k not in STEP_TYPES]
    if unknown:
        hint = did_you_mean(unknown[0], STEP_TYPES) or "steps: " + ", ".join(STEP_TYPES)
        raise PydanticCustomError("unknown_step", "unknown step '{name}'",
                                  {"name": unknown[0], "hint": hint, "at_key": unknown[0]})
    if len(keys) > 1:
        raise PydanticCustomError("step", "one step per list item, found {names}",
                                  {"names": ", ".join(keys), "hint": "start each step with its own '-'",
                                   "at_key": keys[1]})
    return v


Step = Annotated[
    Annotated[AnswerStep, Tag("answer")] | Annotated[PlayStep, Tag("play")] | Annotated[SayStep, Tag("say")]
    | Annotated[MenuStep, Tag("menu")] | Annotated[GatherStep, Tag("gather")] | Annotated[DialStep, Tag("dial")]
    | Annotated[QueueStep, Tag("queue")] | Annotated[TransferStep, Tag("transfer")]
    | Annotated[RecordStep, Tag("record")] | Annotated[VoicemailStep, Tag("voicemail")]
    | Annotated[SetStep, Tag("set")] | Annotated[GotoStep, Tag("goto")] | Annotated[IfStep, Tag("if")]
    | Annotated[HoursStep, Tag("hours")] | Annotated[HttpStep, Tag("http")]
    | Annotated[BookCallbackStep, Tag("book_callback")] | Annotated[HangupStep, Tag("hangup")],
    Discriminator(_step_tag),
    BeforeValidator(_check_step_shape),
]


def _patterns(v: object) -> object:
    if v is None:
        return None
    items = v if isinstance(v, list) else [v]
    return [str(x) for x in items]


PatternList = Annotated[list[str] | None, BeforeValidator(_patterns, json_schema_input_type=str | list[str] | None)]


class Match(_Strict):
    """When a route applies; every given condition must hold. Each pattern list matches if any pattern does."""

    number: PatternList = Field(None, description="dialled number: '1001', 'prefix:0', '_0120XXXXXX', 're:...'")
    did: PatternList = Field(None, description="the DID an inbound trunk call arrived on")
    caller: PatternList = Field(None, description="the caller's number")
    trunk: PatternList = Field(None, description="trunk names")
    open_in: str | None = Field(None, description="a calendar that must be open")
    closed_in: str | None = Field(None, description="a calendar that must be closed")

    @field_validator("number", "did", "caller")
    @classmethod
    def _compile_check(cls, v: list[str] | None) -> list[str] | None:
        for p in v or []:
            try:
                compile_pattern(p)
            except PatternError as exc:
                raise PydanticCustomError("pattern", "bad pattern '{p}': {err}",
                                          {"p": p, "err": str(exc),
                                           "hint": "'1001', 'prefix:03', '_0120XXXXXX' or 're:^0[36]'"}) from None
        return v

    @cached_property
    def compiled(self) -> tuple[tuple[str, tuple[NumberPattern, ...]], ...]:
        """The pattern lists compiled once (a plain attribute after the first call, for fast matching)."""
        return tuple((name, tuple(compile_pattern(p) for p in pats))
                     for name in ("number", "did", "caller") if (pats := getattr(self, name)) is not None)

    def test(self, *, number: str, caller: str, did: str, trunk: str,
             calendars: dict[str, Calendar], now: float) -> dict[str, str] | None:
        """Captured variables when this match holds, else None."""
        captured: dict[str, str] = {}
        values = {"number": number, "did": did, "caller": caller}
        for name, pats in self.compiled:
            value = values[name]
            for p in pats:
                got = p.match(value)
                if got is not None:
                    captured.update(got)
                    break
            else:
                return None
        if self.trunk is not None and trunk not in self.trunk:
            return None
        if self.open_in is not None and not calendars[self.open_in].is_open(now):
            return None
        if self.closed_in is not None and calendars[self.closed_in].is_open(now):
            return None
        return captured


class Route(_Strict):
    """A named list of steps run when `match` holds (no match: always)."""

    name: str
    match: Match = Field(default_factory=Match)
    steps: list[Step]


class Context(_Strict):
    """Routes for a group of callers: the users and trunks listed (or 'all') start here."""

    users: list[str] | Literal["all"] = Field(default_factory=list)
    trunks: list[str] | Literal["all"] = Field(default_factory=list)
    routes: list[Route]

    @field_validator("users", "trunks", mode="before")
    @classmethod
    def _ids_as_text(cls, v: object) -> object:
        return [str(x) for x in v] if isinstance(v, list) else v


class RingGroup(_Strict):
    """Users rung together or in turn."""

    members: list[str]
    strategy: Literal["ring_all", "sequential", "round_robin", "random"] = "ring_all"
    timeout: float = Field(20.0, gt=0)

    @field_validator("members", mode="before")
    @classmethod
    def _ids_as_text(cls, v: object) -> object:
        return [str(x) for x in v] if isinstance(v, list) else v


class RouteMatch(BaseModel):
    """The route chosen for a call and the variables it starts with."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    context: str
    route: Route
    variables: dict[str, str]


class Dialplan(_Strict):
    """A whole dialplan file."""

    version: int = Field(1, ge=1, le=1, description="the dialplan language version")
    description: str = ""
    variables: dict[VarName, Text] = Field(
        default_factory=dict, description="variables every call starts with")
    calendars: dict[str, Calendar] = Field(default_factory=dict)
    ring_groups: dict[str, RingGroup] = Field(default_factory=dict)
    blocks: dict[str, list[Step]] = Field(default_factory=dict, description="named step lists for goto")
    contexts: dict[str, Context]
    default_context: str | None = Field(None, description="for callers no context lists")
    max_steps: int = Field(200, ge=10, le=100000, description="steps a call may run without waiting on input")

    def context_for(self, *, user: str | None = None, trunk: str | None = None) -> str | None:
        """The context a call from `user` or `trunk` starts in (explicit lists before 'all')."""
        for wildcard in (False, True):
            for name, ctx in self.contexts.items():
                if user is not None and (ctx.users == "all" if wildcard else user in ctx.users):
                    return name
                if trunk is not None and (ctx.trunks == "all" if wildcard else trunk in ctx.trunks):
                    return name
        return self.default_context

    def route(self, context: str, number: str, *, caller: str = "", did: str = "", trunk: str = "",
              now: float) -> RouteMatch | None:
        """The first route of `context` whose match holds, with the call's starting variables."""
        ctx = self.contexts.get(context)
        if ctx is None:
            return None
        for route in ctx.routes:
            captured = route.match.test(number=number, caller=caller, did=did, trunk=trunk,
                                        calendars=self.calendars, now=now)
            if captured is not None:
                variables = dict(self.variables)
                variables.update({"caller": caller, "number": number, "did": did or number, "trunk": trunk,
                                  "context": context, "route": route.name})
                variables.update(captured)
                return RouteMatch(context=context, route=route, variables=variables)
        return None


for _model in (MenuSpec, DialSpec, QueueSpec, IfSpec, HoursSpec, HttpSpec, BookCallbackSpec, Condition, Route,
               Context, Dialplan):
    _model.model_rebuild()
