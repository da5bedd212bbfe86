"""Hot reload of the dialplan: a new plan replaces the running one only if it is valid.

Calls keep the plan object they started with (an `Interpreter` holds its own reference), so a reload
never changes a call in progress. The app wires SIGHUP and file watching to `reload()`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from softswitch.dialplan.loader import References, parse_dialplan
from softswitch.dialplan.model import Dialplan
from softswitch.yamlconf import ConfigError, load_yaml, load_yaml_file

if TYPE_CHECKING:  # the config imports dialplan modules, so only type checkers import it back
    from softswitch.config import NodeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    """The outcome of a reload: `ok` with the new plan, or the errors and the plan still running."""

    ok: bool
    plan: Dialplan | None
    errors: list[str] = field(default_factory=list)


class DialplanHolder:
    """Holds the current dialplan; `reload()` swaps in a new one after full validation."""

    def __init__(self, path: Path | None = None, refs: References | None = None, plan: Dialplan | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.refs = refs or References()
        self._plan = plan
        self.generation = 0 if plan is None else 1
        self._log = logger or log

    @classmethod
    def from_config(cls, config: NodeConfig) -> DialplanHolder:
        """A holder for a loaded NodeConfig (uses its already validated plan and its references)."""
        return cls(config.dialplan, config.references(), config.plan)

    @property
    def plan(self) -> Dialplan | None:
        """The plan new calls start with."""
        return self._plan

    def watch_paths(self) -> list[Path]:
        """Files whose change should trigger `reload()`."""
        return [self.path] if self.path is not None else []

    def reload(self, source: str | Path | None = None) -> ReloadResult:
        """Load `source` (a Path or a file name; a str holding a newline is YAML text; None: `self.path`).

        A valid plan replaces the current one; an invalid one is refused and logged, and the current
        plan keeps running.
        """
        try:
            if source is None:
                if self.path is None:
                    raise ConfigError(["<reload>:1:1: (dialplan): no dialplan file to reload"])
                located = load_yaml_file(self.path)
            elif isinstance(source, str) and "\n" in source:
                located = load_yaml(source, str(self.path or "<reload>"))
            else:
                located = load_yaml_file(source)
            plan = parse_dialplan(located, self.refs)
        except ConfigError as exc:
            for line in exc.errors:
                self._log.error("dialplan reload refused: %s", line)
            return ReloadResult(False, self._plan, exc.errors)
        self._plan = plan
        self.generation += 1
        self._log.info("dialplan reloaded (generation %d)", self.generation)
        return ReloadResult(True, plan)
