"""`parley hold` (legal holds), `parley erase` (a caller's GDPR erasure) and `parley recording
export` (a call's recording, decrypted and checked) from the shell."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from admin import audit, erasure
from admin.db import create_engine, display_url, session_factory
from admin.models import LegalHold, Recording, RecordingState
from telephony.recording import RecordingError, decrypt, wav_bytes

ACTOR = "cli"


def add_parsers(sub: Any, *, settings: Callable[[argparse.Namespace], Any]) -> None:
    hold = sub.add_parser("hold", help="place, release and list legal holds")
    actions = hold.add_subparsers(dest="hold_action", required=True, metavar="ACTION")
    place = actions.add_parser(
        "place", help="keep a call, or every call of a caller, from purge and erasure"
    )
    subject = place.add_mutually_exclusive_group(required=True)
    subject.add_argument("--call", metavar="CALL_ID", help="the call's id (32 hex digits)")
    subject.add_argument("--caller", metavar="NUMBER", help="the caller's number, any format")
    place.add_argument("--reason", required=True, help="why (a case or matter reference)")
    place.add_argument("--by", default=ACTOR, help="who places it (for the audit log)")
    place.set_defaults(func=lambda args: _place(settings(args), args))
    release = actions.add_parser("release", help="release a hold by its number")
    release.add_argument("hold_id", type=int)
    release.add_argument("--by", default=ACTOR, help="who releases it (for the audit log)")
    release.set_defaults(func=lambda args: _release(settings(args), args))
    listing = actions.add_parser("list", help="every hold, newest first")
    listing.set_defaults(func=lambda args: _list(settings(args)))

    recording = sub.add_parser("recording", help="a call's recording")
    recording_actions = recording.add_subparsers(
        dest="recording_action", required=True, metavar="ACTION"
    )
    export = recording_actions.add_parser(
        "export",
        help="decrypt a call's recording into a WAV, checked against its stored SHA-256 "
        "(audited as recording.read)",
    )
    export.add_argument("call_id")
    export.add_argument("--out", required=True, type=Path, help="the WAV file to write")
    export.add_argument("--by", default=ACTOR, help="who listens (for the audit log)")
    export.set_defaults(func=lambda args: _export_recording(settings(args), args))

    erase = sub.add_parser(
        "erase",
        help="erase a caller (GDPR art. 17): every call of their number, what was recorded "
        "about them, their recording files, quarantined lines and exports; leaves a receipt",
    )
    erase.add_argument("--caller", required=True, metavar="NUMBER", help="any format")
    erase.add_argument("--region", default="US", help="the country of a national number")
    erase.add_argument("--by", default=ACTOR, help="who asked (for the receipt and audit log)")
    erase.add_argument("--yes", action="store_true", help="do it (without: say what it would)")
    erase.set_defaults(func=lambda args: _erase(settings(args), args))


def _place(settings: Any, args: argparse.Namespace) -> int:
    keys = settings.keys()

    def work(session: Any) -> str:
        hold = erasure.place_hold(
            session,
            reason=args.reason,
            actor=args.by,
            audit_key=keys.audit_hmac,
            call_id=args.call,
            caller_number=args.caller,
            number_key=keys.number_hash,
        )
        return f"legal hold #{hold.id} placed on {_subject(hold)}"

    return _run(settings, work)


def _release(settings: Any, args: argparse.Namespace) -> int:
    keys = settings.keys()

    def work(session: Any) -> str:
        hold = erasure.release_hold(
            session, hold_id=args.hold_id, actor=args.by, audit_key=keys.audit_hmac
        )
        return f"legal hold #{hold.id} on {_subject(hold)} released"

    return _run(settings, work)


def _list(settings: Any) -> int:
    def work(session: Any) -> str:
        holds = session.scalars(select(LegalHold).order_by(LegalHold.id.desc())).all()
        if not holds:
            return "no legal holds"
        return "\n".join(
            f"#{h.id} {'active  ' if h.released_at is None else 'released'} {_subject(h)}: "
            f"{h.reason} (by {h.created_by}, {h.created_at:%Y-%m-%d %H:%M})"
            for h in holds
        )

    return _run(settings, work)


def _erase(settings: Any, args: argparse.Namespace) -> int:
    keys = settings.keys()
    if not args.yes:
        print(
            "This erases every call of that number and everything recorded about them; it "
            "cannot be undone. Run again with --yes to do it.",
            file=sys.stderr,
        )
        return 2

    def work(session: Any) -> str:
        receipt = erasure.erase_caller(
            session,
            number=args.caller,
            actor=args.by,
            number_key=keys.number_hash,
            audit_key=keys.audit_hmac,
            files=settings.data_files(),
            region=args.region.upper(),
        )
        return json.dumps(erasure.receipt_as_dict(receipt), indent=1)

    code = _run(settings, work)
    if code == 0:
        engine = create_engine(settings.database_url())
        erasure.scrub_freed_space(engine)
        engine.dispose()
    return code


def _export_recording(settings: Any, args: argparse.Namespace) -> int:
    keys = settings.keys()
    store = settings.recording_store()

    def work(session: Any) -> str:
        found = session.scalar(select(Recording).where(Recording.call_id == args.call_id))
        if found is None or found.state is not RecordingState.FINISHED:
            raise KeyError(f"call {args.call_id} has no finished recording")
        try:
            audio = decrypt(store.folder / Path(found.file).name, key=store.key)
        except (OSError, RecordingError) as error:
            raise ValueError(str(error)) from None
        pcm_sha256 = hashlib.sha256(audio.pcm).hexdigest()
        if pcm_sha256 != found.pcm_sha256:
            raise ValueError("the recording does not match its stored SHA-256")
        audit.append(
            session,
            key=keys.audit_hmac,
            actor=args.by,
            action="recording.read",
            target=f"call:{args.call_id}",
            details={"pcm_sha256": pcm_sha256, "via": "cli"},
        )
        args.out.write_bytes(wav_bytes(audio))
        seconds = len(audio.pcm) / (audio.channels * 2 * audio.sample_rate)
        return f"{args.out}: {seconds:.1f} s, stereo; audio sha256 {pcm_sha256} (as stored)"

    return _run(settings, work)


def _run(settings: Any, work: Callable[[Any], str]) -> int:
    url = settings.database_url()
    try:
        with session_factory(create_engine(url))() as session:
            try:
                said = work(session)
            except erasure.HeldError as error:
                session.commit()  # the refusal is audited
                print(f"refused: {error}", file=sys.stderr)
                return 1
            except (KeyError, ValueError) as error:
                session.rollback()
                print(f"refused: {error}", file=sys.stderr)
                return 1
            session.commit()
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        print(f"cannot use the database at {display_url(url)}: {reason}", file=sys.stderr)
        return 2
    print(said)
    return 0


def _subject(hold: LegalHold) -> str:
    return f"call {hold.call_id}" if hold.call_id else f"caller {hold.caller_masked}"
