"""The `softswitch` command: run a node, check a config, render TTS, manage the database."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="softswitch", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start a node (a demo node on 127.0.0.1 with SQLite without --config)")
    run.add_argument("--config", "-c", help="node config YAML")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument("--log-level", default="INFO")

    check = sub.add_parser("check", help="validate a config and its dialplans without starting")
    check.add_argument("file")

    schema = sub.add_parser("schema", help="write the JSON Schema of configs and dialplans")
    schema.add_argument("--kind", choices=("config", "dialplan"), default="dialplan")
    schema.add_argument("-o", "--output", help="file to write (default: standard output)")

    tts = sub.add_parser("tts", help="render a TTS prompt to an 8 kHz WAV file")
    tts.add_argument("text")
    tts.add_argument("-o", "--output", required=True)
    tts.add_argument("--lang", default="ja")
    tts.add_argument("--voice", default="")
    tts.add_argument("--rate", type=int, default=8000)

    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=("upgrade", "status"))
    db.add_argument("--config", "-c")
    db.add_argument("--database", help="database URL (overrides the config)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from softswitch.app import run_main

        return run_main(args)
    if args.command == "check":
        from softswitch.config import check_main

        return check_main(args.file)
    if args.command == "schema":
        from softswitch.config import schema_main

        return schema_main(args.kind, args.output)
    if args.command == "tts":
        from media.tts import tts_main

        return tts_main(args.text, args.output, lang=args.lang, voice=args.voice, rate=args.rate)
    if args.command == "db":
        from softswitch.store.cli import db_main

        return db_main(args.action, config=args.config, database=args.database)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
