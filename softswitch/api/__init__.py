"""HTTP and WebSocket interfaces: REST for agents, supervisors and operators, the CTI event stream,
the wallboard page and Prometheus metrics."""

from softswitch.api.centre import Conflict, ContactCentre, NotFound, NotSupported
from softswitch.api.events import ScreenPop
from softswitch.api.server import ApiError, ApiServer

__all__ = ["ApiError", "ApiServer", "Conflict", "ContactCentre", "NotFound", "NotSupported", "ScreenPop"]
