"""`parley audit`: verify the audit chain, write a checkpoint, export and check evidence bundles,
print the key that verifies checkpoints and bundles."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from admin import audit_checkpoint
from admin.db import create_engine, display_url, session_factory


def add_parser(sub: Any, *, settings: Callable[[argparse.Namespace], Any]) -> None:
    audit = sub.add_parser(
        "audit", help="verify the tamper-evident audit log and keep its checkpoints"
    )
    actions = audit.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="walk the audit chain and hold it against the signed checkpoints; exits 1 and "
        "names the first bad entry when anything was changed, inserted, deleted or cut off",
    )
    verify.set_defaults(func=lambda args: _verify(settings(args)))
    checkpoint = actions.add_parser(
        "checkpoint",
        help="append a signed checkpoint of the chain's head to the checkpoint file now (the "
        "jobs' schedule does this every audit.checkpoint_interval_s)",
    )
    checkpoint.set_defaults(func=lambda args: _checkpoint(settings(args)))
    export = actions.add_parser(
        "export",
        help="an evidence bundle (zip: JSON, CSV, HTML report, audit chain proof, signed "
        "checkpoint) of some calls; audited",
    )
    chosen = export.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--call", action="append", metavar="CALL_ID", help="a call (repeatable)")
    chosen.add_argument(
        "--from", dest="start", metavar="TIME", help="calls started from (ISO 8601)"
    )
    export.add_argument("--to", dest="end", metavar="TIME", help="... until (with --from)")
    export.add_argument("--out", type=Path, help="the folder it goes in (default: the exports)")
    export.add_argument("--by", default="cli", help="who exports (for the audit log)")
    export.set_defaults(func=lambda args: _export(settings(args), args))
    check = actions.add_parser(
        "verify-bundle",
        help="check an evidence bundle offline: its signature, every file's hash, the audit "
        "chain up to its signed checkpoint, the schema; exits 1 naming what is wrong",
    )
    check.add_argument("bundle", type=Path)
    check.add_argument(
        "--public-key",
        help="the key you were given (parley audit public-key); without it the bundle's own "
        "key is used, which proves integrity but not who signed",
    )
    check.set_defaults(func=_verify_bundle)
    public_key = actions.add_parser(
        "public-key",
        help="print the key that verifies checkpoints and evidence bundles (give it to your "
        "auditors once, out of band)",
    )
    public_key.set_defaults(func=lambda args: _public_key(settings(args)))


def _verify(settings: Any) -> int:
    file = settings.checkpoint_file()
    try:
        with _session(settings) as session:
            result = audit_checkpoint.verify(
                session, audit_key=settings.keys().audit_hmac, checkpoint_file=file
            )
    except SQLAlchemyError as error:
        return _database_error(settings, error)
    print(f"audit log: {result.entries} entries; checkpoints compared: {result.checkpoints} "
          f"(from {file})")  # fmt: skip
    if not file.exists():
        print("  no checkpoint file yet: a chain cut short from the end cannot be detected "
              "until one is written (parley audit checkpoint)")  # fmt: skip
    if result.ok:
        print("OK: every entry fits the chain, and the chain holds every checkpoint")
        return 0
    for problem in result.problems:
        print(f"FAILED: {problem}")
    return 1


def _checkpoint(settings: Any) -> int:
    file = settings.checkpoint_file()
    try:
        with _session(settings) as session:
            checkpoint = audit_checkpoint.make(session, audit_key=settings.keys().audit_hmac)
    except SQLAlchemyError as error:
        return _database_error(settings, error)
    written = audit_checkpoint.append(file, checkpoint)
    state = "written to" if written else "unchanged since the last one in"
    print(f"checkpoint: entry {checkpoint.entry_id} at {checkpoint.at}, {state} {file}")
    return 0


def _export(settings: Any, args: argparse.Namespace) -> int:
    from admin import evidence

    try:
        if args.call:
            call_ids, scope = list(args.call), {"calls": list(args.call)}
            start = end = None
        else:
            if not args.end:
                print("--from needs --to", file=sys.stderr)
                return 2
            start = dt.datetime.fromisoformat(args.start)
            end = dt.datetime.fromisoformat(args.end)
            if start.tzinfo is None or end.tzinfo is None:
                print("give --from and --to with a time zone (Z or +hh:mm)", file=sys.stderr)
                return 2
            call_ids, scope = [], {"from": args.start, "to": args.end}
    except ValueError as error:
        print(f"not an ISO 8601 time: {error}", file=sys.stderr)
        return 2
    try:
        with _session(settings) as session:
            if start is not None and end is not None:
                call_ids = evidence.calls_between(session, start, end)
            made = evidence.export(
                session,
                call_ids=call_ids,
                scope=scope,
                folder=args.out or settings.export_dir(),
                actor=args.by,
                audit_key=settings.keys().audit_hmac,
                checkpoint_file=settings.checkpoint_file(),
            )
    except SQLAlchemyError as error:
        return _database_error(settings, error)
    print(f"{made.path}: {made.calls} call(s); sha256 {made.sha256}")
    return 0


def _verify_bundle(args: argparse.Namespace) -> int:
    from admin import evidence

    try:
        key = audit_checkpoint.public_key_from_text(args.public_key) if args.public_key else None
    except ValueError as error:
        print(f"--public-key: {error}", file=sys.stderr)
        return 2
    verdict = evidence.verify(args.bundle, public_key=key)
    print(f"{args.bundle}: {verdict.calls} call(s), {verdict.entries} audit entries")
    if not verdict.key_checked:
        print("  signed by the key inside the bundle (give --public-key to check who signed)")
    if verdict.ok:
        print("OK: signature, file hashes, audit chain and checkpoint, schema")
        return 0
    for problem in verdict.problems:
        print(f"FAILED: {problem}")
    return 1


def _public_key(settings: Any) -> int:
    key = audit_checkpoint.signing_key(settings.keys().audit_hmac).public_key()
    print(audit_checkpoint.public_key_text(key))
    return 0


def _session(settings: Any) -> Any:
    return session_factory(create_engine(settings.database_url()))()


def _database_error(settings: Any, error: SQLAlchemyError) -> int:
    reason = getattr(error, "orig", None) or error
    print(
        f"cannot read the audit log at {display_url(settings.database_url())}: {reason}",
        file=sys.stderr,
    )
    return 2
