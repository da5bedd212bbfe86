"""`softswitch db upgrade|status`: apply or show schema migrations."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from softswitch.store import create_store
from softswitch.store.base import MigrationStatus, StoreError, StoreUnavailable

DEFAULT_DATABASE = "sqlite:///softswitch.db"


def resolve_database(config: str | None, database: str | None) -> tuple[str, Path]:
    """The database URL and the folder relative SQLite paths resolve against.

    `--database` wins; otherwise the config's `database:` key (through softswitch.config when it
    exists, else read from the YAML directly); otherwise the demo default in the current folder.
    """
    if database:
        return database, Path.cwd()
    if config:
        cfg_path = Path(config)
        base = cfg_path.resolve().parent
        loader: Callable[[Path], Any] | None
        try:
            from softswitch.config import load_config as loader  # written in parallel; optional here
        except ImportError:
            loader = None
        if loader is not None:
            try:
                url = loader(cfg_path).database
            except Exception as exc:  # the config module reports its own, more precise errors
                raise StoreError(f"{config}: {exc}") from exc
            return str(url), base
        return _database_from_yaml(cfg_path), base
    return DEFAULT_DATABASE, Path.cwd()


def _database_from_yaml(path: Path) -> str:
    import yaml

    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise StoreError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path}: the config must be a mapping")
    url = data.get("database", DEFAULT_DATABASE)
    if not isinstance(url, str):
        raise StoreError(f"{path}: `database` must be a URL string")
    return url


def _print_status(url: str, st: MigrationStatus) -> None:
    print(f"database: {_redact(url)}")
    print(f"schema version: {st.current} (latest {st.latest})")
    for version, name, applied_at in st.applied:
        print(f"  applied {version:4d}  {name}  at {applied_at:.0f}")
    for version, name in st.pending:
        print(f"  pending {version:4d}  {name}")


def _redact(url: str) -> str:
    """Hide a password in a PostgreSQL URL before printing it."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


async def _run(action: str, url: str, base: Path) -> int:
    store = create_store(url, base_dir=base)
    try:
        st = await (store.migrate() if action == "upgrade" else store.migration_status())
    finally:
        await store.close()
    _print_status(url, st)
    if action == "status" and st.pending:
        return 1  # lets deployment scripts notice a database that needs `db upgrade`
    return 0


def db_main(action: str, *, config: str | None, database: str | None) -> int:
    """Entry point of `softswitch db`: 0 on success, 1 when migrations are pending, 2 on error."""
    if action not in ("upgrade", "status"):
        print(f"softswitch db: unknown action {action!r}", file=sys.stderr)
        return 2
    try:
        url, base = resolve_database(config, database)
        return asyncio.run(_run(action, url, base))
    except StoreUnavailable as exc:
        print(f"softswitch db: database unavailable: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"softswitch db: {exc}", file=sys.stderr)
        return 2
