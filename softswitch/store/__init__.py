"""Persistence: one `Store` interface, PostgreSQL and SQLite backends, and the batching writer.

store = await open_store(config.database, base_dir=config_dir)
writer = StoreWriter(bus, store)
await writer.start()
...
await writer.stop()      # flushes everything (to the database, or durably to the spool)
await store.close()
"""

from __future__ import annotations

import logging
from pathlib import Path

from softswitch.store.base import (
    Affinity,
    Agent,
    CallRecord,
    Campaign,
    CampaignLease,
    CampaignRecord,
    DncEntry,
    MigrationStatus,
    QueueStats,
    Registration,
    ScheduledCallback,
    Store,
    StoreError,
    StoreUnavailable,
    User,
)
from softswitch.store.writer import StoreWriter

log = logging.getLogger(__name__)

__all__ = [
    "Affinity",
    "Agent",
    "CallRecord",
    "Campaign",
    "CampaignLease",
    "CampaignRecord",
    "DncEntry",
    "MigrationStatus",
    "QueueStats",
    "Registration",
    "ScheduledCallback",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoreWriter",
    "User",
    "create_store",
    "open_store",
    "parse_url",
]


def parse_url(url: str, *, base_dir: Path) -> tuple[str, str]:
    """Split a database URL into (backend, target): ('sqlite', path or ':memory:') or ('postgresql', dsn).

    `sqlite:///rel/x.db` is relative to `base_dir`, `sqlite:////abs/x.db` is absolute (the
    SQLAlchemy convention), `sqlite:///:memory:` is an in-memory database.
    """
    if not isinstance(url, str) or not url.strip():
        raise StoreError("database URL is empty")
    url = url.strip()
    if url.startswith("sqlite:"):
        if not url.startswith("sqlite:///"):
            raise StoreError(
                f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////abs/path.db"
            )
        path = url[len("sqlite:///") :].split("?", 1)[0]
        if not path:
            raise StoreError(f"bad SQLite URL {url!r}: no file path")
        if path == ":memory:":
            return "sqlite", path
        p = Path(path)
        return "sqlite", str(p if p.is_absolute() else (base_dir / p).resolve())
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        if len(url) <= len(scheme) + 3:
            raise StoreError(f"bad PostgreSQL URL {url!r}")
        return "postgresql", url
    raise StoreError(f"unsupported database URL {url!r}: expected sqlite:///… or postgresql://…")


def create_store(url: str, *, base_dir: Path, spool_dir: Path | None = None) -> Store:
    """Build the store for `url` without touching the database (no connection, no migration)."""
    backend, target = parse_url(url, base_dir=base_dir)
    spool = spool_dir if spool_dir is not None else base_dir / "spool"
    if backend == "sqlite":
        from softswitch.store.sqlite import SqliteStore

        return SqliteStore(target, url=url, spool_dir=spool)
    from softswitch.store.postgres import PostgresStore

    return PostgresStore(target, spool_dir=spool)


async def open_store(
    url: str,
    *,
    base_dir: Path,
    spool_dir: Path | None = None,
    migrate: bool = True,
    require: bool = True,
) -> Store:
    """Open the store named by `url` and apply pending migrations.

    `spool_dir` (default `base_dir/spool`) is where the writer keeps events while the database is
    down. Raises StoreError for a bad URL and StoreUnavailable when the database cannot be reached,
    unless `require` is False: then a PostgreSQL store is returned anyway and migrates as soon as
    the database answers, so a node can start (and spool) during an outage.
    """
    store = create_store(url, base_dir=base_dir, spool_dir=spool_dir)
    if migrate:
        try:
            await store.migrate()
        except StoreUnavailable as exc:
            if not require and store.defer_migration():
                log.warning("database unavailable at start (%s); events will be spooled", exc)
                return store
            await store.close()
            raise
        except BaseException:
            await store.close()
            raise
    return store
