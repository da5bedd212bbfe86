"""Prior-handler memory: which agents handled a caller (by number or CRM customer id), and when.

Kept as plain data so the store can save and reload it (`export()` / `load()`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class AffinityMemory:
    """Remembers up to `per_key` most recent handlers per key, forgetting those older than `max_age`."""

    def __init__(self, per_key: int = 5, max_age: float | None = 90 * 86400.0) -> None:
        self.per_key = per_key
        self.max_age = max_age
        self._handlers: dict[str, list[tuple[str, float]]] = {}

    def record_handler(self, key: str, agent: str, when: float) -> None:
        """Note that `agent` handled the caller known by `key` at `when`."""
        if not key:
            return
        entries = [e for e in self._handlers.get(key, ()) if e[0] != agent]
        entries.append((agent, when))
        entries.sort(key=lambda e: e[1], reverse=True)
        self._handlers[key] = entries[: self.per_key]

    def recent(self, key: str, now: float) -> list[str]:
        """Agents who handled `key`, most recent first, within `max_age` of `now`."""
        entries = self._handlers.get(key)
        if not entries:
            return []
        if self.max_age is None:
            return [a for a, _ in entries]
        return [a for a, when in entries if now - when <= self.max_age]

    def forget(self, key: str) -> None:
        """Drop everything known about `key` (e.g. on a customer's request)."""
        self._handlers.pop(key, None)

    def export(self) -> list[dict[str, object]]:
        """Plain rows `{key, agent, when}` for the store."""
        return [{"key": k, "agent": a, "when": w} for k, es in self._handlers.items() for a, w in es]

    def load(self, rows: Iterable[object]) -> None:
        """Merge rows from `export()` (dicts with key, agent, when) or the store's `Affinity` rows
        (objects or dicts with caller, agent, last_handled)."""
        for row in rows:
            if isinstance(row, Mapping):
                key, agent = row.get("key", row.get("caller")), row["agent"]
                when = row.get("when", row.get("last_handled"))
            else:
                key, agent, when = row.caller, row.agent, row.last_handled  # type: ignore[attr-defined]
            if not isinstance(when, int | float):
                raise ValueError(f"affinity row without a time: {row!r}")
            self.record_handler(str(key), str(agent), float(when))

    def __len__(self) -> int:
        return len(self._handlers)
