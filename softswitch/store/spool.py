"""An append-only local spool of events (JSON lines in numbered segment files).

Blocking file code, meant to run on a worker thread. Appends go to the newest segment and are
fsync'd per batch; `roll()` closes it so that the replayer can read whole closed segments in order
while new appends start a fresh one. A segment is deleted only after all its events are in the
database, so a crash at any point replays at worst some events twice, which the store ignores.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from softswitch.events import Event
from softswitch.store.base import event_json

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^spool-(\d{12})\.jsonl$")


class Spool:
    """Numbered JSON-lines segments under one directory; not thread-safe, use from one thread."""

    def __init__(self, directory: Path, *, segment_bytes: int = 8 << 20) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._segment_bytes = segment_bytes
        self._current: IO[str] | None = None
        self._current_path: Path | None = None
        self._current_size = 0
        found = self.segments()
        self._next_seq = (int(_SEGMENT.match(found[-1].name).group(1)) + 1) if found else 1  # type: ignore[union-attr]
        self.skipped_lines = 0
        self._set_aside: set[tuple[str, int]] = set()

    def segments(self) -> list[Path]:
        """Every segment on disk, oldest first (including the one being appended to)."""
        out = [p for p in self.dir.iterdir() if _SEGMENT.match(p.name)]
        return sorted(out, key=lambda p: p.name)

    def pending(self) -> bool:
        """True when any segment holds events."""
        return any(p.stat().st_size > 0 for p in self.segments())

    def append(self, events: Sequence[Event]) -> None:
        """Append a batch and fsync it before returning."""
        if not events:
            return
        if self._current is None or self._current_size >= self._segment_bytes:
            self._open_next()
        assert self._current is not None
        data = "".join(event_json(e) + "\n" for e in events)
        self._current.write(data)
        self._current.flush()
        os.fsync(self._current.fileno())
        self._current_size += len(data)

    def _open_next(self) -> None:
        self._close_current()
        path = self.dir / f"spool-{self._next_seq:012d}.jsonl"
        self._next_seq += 1
        self._current = open(path, "a", encoding="utf-8")
        self._current_path = path
        self._current_size = 0
        # The new file's directory entry must survive a crash too.
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _close_current(self) -> None:
        if self._current is not None:
            self._current.close()
        self._current = None
        self._current_path = None
        self._current_size = 0

    def roll(self) -> list[Path]:
        """Close the segment being appended to and return all closed segments, oldest first."""
        self._close_current()
        return self.segments()

    def read(self, path: Path, chunk: int) -> Iterator[list[Event]]:
        """The events of a segment in order, `chunk` at a time; a torn or bad line is skipped."""
        batch: list[Event] = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    batch.append(Event.from_dict(json.loads(line)))
                except (ValueError, TypeError) as exc:
                    # A line torn by a crash mid-write, or an event kind this version does not know.
                    if (path.name, lineno) in self._set_aside:
                        continue  # a replay retried after a failure reads the segment again
                    self._set_aside.add((path.name, lineno))
                    self.skipped_lines += 1
                    log.error("spool %s:%d unreadable, kept aside: %s", path.name, lineno, exc)
                    with open(self.dir / "unreadable.jsonl", "a", encoding="utf-8") as bad:
                        bad.write(line if line.endswith("\n") else line + "\n")
                    continue
                if len(batch) >= chunk:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def load(self, path: Path, chunk: int) -> list[list[Event]]:
        """All of a segment's events in chunks (segments are bounded, so this fits in memory)."""
        return list(self.read(path, chunk))

    def remove(self, path: Path) -> None:
        """Delete a segment whose events are all stored."""
        path.unlink(missing_ok=True)

    def reject(self, events: Sequence[Event], reason: str) -> None:
        """Keep events the database refused (bad data) in `rejected.jsonl` for an operator."""
        with open(self.dir / "rejected.jsonl", "a", encoding="utf-8") as f:
            for e in events:
                f.write(json.dumps({"reason": reason, "event": e.to_dict()}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        """Close the open segment (events already appended are on disk)."""
        self._close_current()
