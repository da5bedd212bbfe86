"""The RTP port pool (media.rtp_ports), sans-IO: even RTP ports, RTCP on RTP+1."""

from __future__ import annotations


class PortPoolExhausted(RuntimeError):
    """No RTP port pair is free; the call layer answers 503 Service Unavailable."""


def parse_port_range(spec: object) -> tuple[int, int]:
    """ "20000-20999", (20000, 20999) or an object with .start/.end (the config's PortRange) -> (lo, hi)."""
    if isinstance(spec, tuple):
        lo, hi = spec
    elif hasattr(spec, "start") and hasattr(spec, "end"):
        lo, hi = int(spec.start), int(spec.end)
    elif not isinstance(spec, str):
        raise ValueError(f"bad port range {spec!r}")
    else:
        a, sep, b = spec.partition("-")
        if not sep or not a.strip().isdigit() or not b.strip().isdigit():
            raise ValueError(f"bad port range {spec!r} (expected LOW-HIGH)")
        lo, hi = int(a), int(b)
    if not 1024 <= lo < hi <= 65535:
        raise ValueError(f"bad port range {lo}-{hi}")
    return lo, hi


class PortPool:
    """Hands out even ports whose odd neighbour is inside the range, least recently used first.

    Freed ports go to the back of the line so a late packet of a finished call does not land in
    the next call that would otherwise reuse the same port at once.
    """

    def __init__(self, port_range: object) -> None:
        lo, hi = parse_port_range(port_range)
        first = lo + (lo & 1)
        self._free: list[int] = list(range(first, hi, 2))  # port+1 <= hi is guaranteed by range(.., hi, 2)
        self._in_use: set[int] = set()
        self.capacity = len(self._free)
        if not self.capacity:
            raise ValueError("port range holds no even/odd pair")

    def allocate(self) -> int:
        """The next free RTP port (its RTCP port is +1); raises PortPoolExhausted."""
        if not self._free:
            raise PortPoolExhausted(f"all {self.capacity} RTP port pairs are in use")
        port = self._free.pop(0)
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Return a port to the pool (idempotent)."""
        if port in self._in_use:
            self._in_use.remove(port)
            self._free.append(port)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free)
