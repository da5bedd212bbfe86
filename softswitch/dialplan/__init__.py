"""YAML dialplans: the pydantic schema, a loader with line numbers, the sans-IO interpreter, hot reload."""

from softswitch.dialplan.holder import DialplanHolder, ReloadResult
from softswitch.dialplan.interpreter import Interpreter
from softswitch.dialplan.loader import References, load_dialplan, load_dialplan_text
from softswitch.dialplan.model import Dialplan, Route, RouteMatch

__all__ = [
    "Dialplan", "DialplanHolder", "Interpreter", "References", "ReloadResult", "Route", "RouteMatch",
    "load_dialplan", "load_dialplan_text",
]
