"""Errors raised by the sans-IO SIP message layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from softswitch.sip.message import Request


class SipParseError(ValueError):
    """A SIP message (or one of its parts) is malformed.

    ``status`` is the response a UAS/proxy should answer with (400 unless the version is
    unsupported, 505, or the message is too large, 513); ``partial`` is a best-effort request
    (start line and raw headers) so that a response can still be formed, or None.
    """

    def __init__(self, reason: str, status: int = 400, partial: Request | None = None) -> None:
        super().__init__(reason)
        self.status: int = status
        self.reason: str = reason
        self.partial: Request | None = partial

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status})"
