"""`parley sync`, and the same steps inside `parley run` and `parley worker`: the settings'
disclosures and lines into the database, and each worker's view of them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from admin.config_sync import disclosure_plans, sync_configured, unresolved_plans
from admin.db import create_engine, display_url, session_factory
from admin.disclosure_audio import PiperRenderer
from telephony.consent import DisclosurePlan
from telephony.lines import Line

log = logging.getLogger("parley")


def add_parser(sub: Any, *, settings: Callable[[argparse.Namespace], Any]) -> None:
    sync = sub.add_parser(
        "sync",
        help="write the settings' disclosures (rendering their audio) and lines to the "
        "database (parley run does this at start)",
    )

    def run(args: argparse.Namespace) -> int:
        from admin.logs import configure

        found = settings(args)
        configure("sync", level=found.log_level, fmt=found.log_format)
        return 0 if sync_settings(found) else 2

    sync.set_defaults(func=run)


def sync_settings(settings: Any) -> bool:
    """Syncs in one transaction; False (with the reason on stderr) when it could not."""
    url = settings.database_url()
    engine = create_engine(url)
    try:
        with session_factory(engine)() as session, session.begin():
            report = sync_configured(settings, session, render=PiperRenderer())
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        print(
            f"parley: cannot sync the settings into {display_url(url)}: {reason}", file=sys.stderr
        )
        return False
    except (OSError, ValueError) as error:
        print(f"parley: cannot render a disclosure's audio: {error}", file=sys.stderr)
        return False
    finally:
        engine.dispose()
    log.info(
        "settings synced into the database",
        extra={
            "versions_added": report.versions_added,
            "audio_rendered": len(report.audio_rendered),
            "lines_added": report.lines_added,
            "lines_updated": report.lines_updated,
            "lines_deactivated": report.lines_deactivated,
        },
    )
    return True


def worker_disclosures(settings: Any) -> Callable[[Line], DisclosurePlan | None]:
    """Each line's disclosure as the database has it now (read once, at worker start)."""
    if not any(line.disclosure for line in settings.lines):
        return lambda _line: None
    url = settings.database_url()
    engine = create_engine(url)
    try:
        with session_factory(engine)() as session:
            plans = disclosure_plans(settings, session)
    except SQLAlchemyError as error:
        log.warning(
            "cannot read the disclosures; calls on lines with one will not hear it",
            extra={"database": display_url(url), "error": type(error).__name__},
        )
        plans = unresolved_plans(settings)
    finally:
        engine.dispose()
    return lambda line: plans.get(line.name)
