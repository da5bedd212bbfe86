"""Load a dialplan file and check what it refers to: users, queues, trunks, calendars, prompt files, labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from softswitch.dialplan.model import (
    BookCallbackSpec,
    Context,
    Dialplan,
    DialSpec,
    GotoStep,
    HoursSpec,
    Match,
    PlayStep,
    Prompt,
    QueueSpec,
    RingGroup,
    TransferSpec,
    VoicemailSpec,
)
from softswitch.yamlconf import (
    ConfigError,
    Located,
    did_you_mean,
    format_error,
    load_yaml,
    load_yaml_file,
    validation_errors,
)


@dataclass
class References:
    """What a dialplan may refer to; None means "not known here, do not check"."""

    users: set[str] | None = None
    queues: set[str] | None = None
    trunks: set[str] | None = None
    prompts_dir: Path | None = None


def walk(obj: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every model inside `obj` with its path in the YAML data (aliases used, as written)."""
    if isinstance(obj, BaseModel):
        yield path, obj
        for name, info in type(obj).model_fields.items():
            yield from walk(getattr(obj, name), (*path, info.alias or name))
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from walk(item, (*path, i))
    elif isinstance(obj, dict):
        for k, item in obj.items():
            yield from walk(item, (*path, k))


def _labels(steps: list[Any]) -> set[str]:
    return {s.label for s in steps if s.label}


def check_references(plan: Dialplan, located: Located, refs: References) -> list[str]:
    """Errors for names the plan uses that do not exist, each at its file:line:col."""
    errors: list[str] = []

    def err(path: tuple[str | int, ...], message: str, name: str, choices: Any) -> None:
        hint = did_you_mean(name, choices) if choices else None
        if hint is None and choices is not None:
            hint = "known: " + (", ".join(sorted(map(str, choices)))[:200] or "none defined")
        errors.append(format_error(located.filename, located.position(path), path, message, hint))

    def user(path: tuple[str | int, ...], uid: str) -> None:
        if refs.users is not None and "${" not in uid and uid not in refs.users:
            err(path, f"unknown user {uid!r}", uid, refs.users)

    def trunk(path: tuple[str | int, ...], name: str | None) -> None:
        if name is not None and refs.trunks is not None and name not in refs.trunks:
            err(path, f"unknown trunk {name!r}", name, refs.trunks)

    def prompt_file(path: tuple[str | int, ...], name: str) -> None:
        if refs.prompts_dir is None or "${" in name:
            return
        p = Path(name) if Path(name).is_absolute() else refs.prompts_dir / name
        if not p.is_file():
            errors.append(format_error(located.filename, located.position(path), path,
                                       f"prompt file {name!r} not found",
                                       f"looked for {p}; prompts live in media.prompts_dir"))

    if plan.default_context is not None and plan.default_context not in plan.contexts:
        err(("default_context",), f"unknown context {plan.default_context!r}", plan.default_context, plan.contexts)

    for path, obj in walk(plan):
        if isinstance(obj, Context):
            if isinstance(obj.users, list):
                for i, u in enumerate(obj.users):
                    user((*path, "users", i), u)
            if isinstance(obj.trunks, list):
                for i, t in enumerate(obj.trunks):
                    trunk((*path, "trunks", i), t)
            seen: set[str] = set()
            for i, r in enumerate(obj.routes):
                if r.name in seen:
                    errors.append(format_error(located.filename, located.position((*path, "routes", i, "name")),
                                               (*path, "routes", i, "name"), f"duplicate route name {r.name!r}"))
                seen.add(r.name)
        elif isinstance(obj, RingGroup):
            for i, u in enumerate(obj.members):
                user((*path, "members", i), u)
        elif isinstance(obj, Match):
            for i, t in enumerate(obj.trunk or []):
                trunk((*path, "trunk", i), t)
            for key in ("open_in", "closed_in"):
                cal = getattr(obj, key)
                if cal is not None and cal not in plan.calendars:
                    err((*path, key), f"unknown calendar {cal!r}", cal, plan.calendars)
        elif isinstance(obj, DialSpec):
            for i, u in enumerate(obj.users):
                user((*path, "users", i), u)
            if obj.group is not None and obj.group not in plan.ring_groups:
                err((*path, "group"), f"unknown ring group {obj.group!r}", obj.group, plan.ring_groups)
            trunk((*path, "trunk"), obj.trunk)
        elif isinstance(obj, QueueSpec):
            if refs.queues is not None and obj.name not in refs.queues:
                err((*path, "name"), f"unknown queue {obj.name!r}", obj.name, refs.queues)
        elif isinstance(obj, TransferSpec):
            trunk((*path, "trunk"), obj.trunk)
        elif isinstance(obj, VoicemailSpec):
            user((*path, "box"), obj.box)
        elif isinstance(obj, HoursSpec):
            if obj.calendar not in plan.calendars:
                err((*path, "calendar"), f"unknown calendar {obj.calendar!r}", obj.calendar, plan.calendars)
        elif isinstance(obj, BookCallbackSpec):
            if refs.queues is not None and obj.queue not in refs.queues:
                err((*path, "queue"), f"unknown queue {obj.queue!r}", obj.queue, refs.queues)
            if obj.calendar is not None and obj.calendar not in plan.calendars:
                err((*path, "calendar"), f"unknown calendar {obj.calendar!r}", obj.calendar, plan.calendars)
            if obj.agent:
                user((*path, "agent"), obj.agent)
        elif isinstance(obj, PlayStep):
            prompt_file((*path, "play"), obj.play)
        elif isinstance(obj, Prompt) and obj.file is not None:
            prompt_file((*path, "file"), obj.file)
        elif isinstance(obj, GotoStep) and "${" not in obj.goto:
            owner = _owner_steps(plan, path)
            targets = _labels(owner) | set(plan.blocks)
            if obj.goto not in targets:
                err((*path, "goto"), f"unknown goto target {obj.goto!r}", obj.goto,
                    targets or {"(no labels or blocks defined)"})
    return errors


def _owner_steps(plan: Dialplan, path: tuple[str | int, ...]) -> list[Any]:
    """The top-level step list (a route's or a block's) that a step at `path` belongs to."""
    if path[:1] == ("blocks",):
        return plan.blocks[str(path[1])]
    ctx = plan.contexts[str(path[1])]
    return ctx.routes[int(path[3])].steps


def parse_dialplan(located: Located, refs: References | None = None) -> Dialplan:
    """Validate parsed YAML as a dialplan and check its references; raises ConfigError."""
    try:
        plan = Dialplan.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(validation_errors(exc, located, Dialplan)) from None
    errors = check_references(plan, located, refs or References())
    if errors:
        raise ConfigError(errors)
    return plan


def load_dialplan(path: str | Path, refs: References | None = None) -> Dialplan:
    """Read, validate and check a dialplan file; raises ConfigError with file:line:col errors."""
    return parse_dialplan(load_yaml_file(path), refs)


def load_dialplan_text(text: str, filename: str = "<dialplan>", refs: References | None = None) -> Dialplan:
    """Like `load_dialplan` for text already in memory."""
    return parse_dialplan(load_yaml(text, filename), refs)
