"""The command line of the API: `parley api`, `parley users create`, `parley api-keys create`.

`parley users create NAME --role admin` is how a fresh install gets its first login. The
password comes from PARLEY_USER_PASSWORD, else from standard input when it is not a terminal,
else from a prompt (asked twice).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

PASSWORD_ENV = "PARLEY_USER_PASSWORD"
MIN_PASSWORD = 8

Command = Callable[[argparse.Namespace], int]


def add_parsers(sub: Any, *, settings: Callable[[argparse.Namespace], Any]) -> None:
    """Adds the commands to `parley`'s subcommands; `settings` reads the settings for args."""
    api = sub.add_parser("api", help="run the admin API (parley run starts it)")
    api.set_defaults(func=lambda args: _serve(settings(args)))

    users = sub.add_parser("users", help="manage the people who use the admin API")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a user (the first admin, say)")
    create.add_argument("username")
    create.add_argument("--role", choices=["admin", "supervisor", "auditor"], required=True)
    create.add_argument(
        "--no-password", action="store_true", help="a user for API keys only (no login)"
    )
    create.set_defaults(func=lambda args: _create_user(settings(args), args))

    keys = sub.add_parser("api-keys", help="manage API keys for systems")
    key_actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    issue = key_actions.add_parser("create", help="issue a key for a user; printed once")
    issue.add_argument("--user", required=True, help="the username the key acts as")
    issue.add_argument("--name", required=True, help="what the key is for, e.g. 'wallboard'")
    issue.set_defaults(func=lambda args: _issue_key(settings(args), args))


def _serve(settings: Any) -> int:
    from admin.api.server import serve
    from admin.logs import configure

    configure("api", level=settings.log_level, fmt=settings.log_format)
    serve(settings)
    return 0


def _valid_name(value: str) -> bool:
    from pydantic import TypeAdapter, ValidationError

    from admin.api.schemas import Slug

    try:
        TypeAdapter(Slug).validate_python(value)
    except ValidationError:
        print("parley: names are 1-64 letters, digits, '.', '_' or '-'", file=sys.stderr)
        return False
    return True


def _create_user(settings: Any, args: argparse.Namespace) -> int:
    from admin import accounts
    from admin.models import Role

    if not _valid_name(args.username):
        return 2
    password = None if args.no_password else _read_password()
    if password is not None and len(password) < MIN_PASSWORD:
        print(f"parley users: the password needs {MIN_PASSWORD} characters", file=sys.stderr)
        return 2

    def create(session: Any) -> str:
        user = accounts.create_user(
            session,
            username=args.username,
            role=Role(args.role),
            password=password,
            actor=_actor(),
            audit_key=settings.keys().audit_hmac,
        )
        return f"created {user.role.value} {user.username} (id {user.id})"

    return _in_database(settings, create)


def _issue_key(settings: Any, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from admin import accounts
    from admin.models import User

    if not _valid_name(args.name):
        return 2

    def issue(session: Any) -> str:
        user = session.scalar(select(User).where(User.username == args.user))
        if user is None:
            raise accounts.AccountConflict(f"no user named {args.user!r}")
        _, key = accounts.issue_key(
            session,
            user=user,
            name=args.name,
            actor=_actor(),
            audit_key=settings.keys().audit_hmac,
        )
        return key  # printed once; only its hash is stored

    return _in_database(settings, issue)


def _in_database(settings: Any, work: Callable[[Any], str]) -> int:
    """Runs `work` in a transaction on an upgraded database; prints what it returns."""
    from sqlalchemy.exc import SQLAlchemyError

    from admin import accounts
    from admin.db import create_engine, display_url, session_factory
    from admin.schema import upgrade

    url = settings.database_url()
    engine = create_engine(url, hide_parameters=True)
    try:
        upgrade(url)
        with session_factory(engine)() as session:
            shown = work(session)
            session.commit()
    except accounts.AccountConflict as error:
        print(f"parley: {error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or type(error).__name__
        print(f"parley: cannot use {display_url(url)}: {reason}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(shown)
    return 0


def _read_password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("parley users: the passwords differ")
    return first


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return f"cli:uid-{os.getuid()}"
