"""The `parley` command line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from telephony.events import EventOutlet

log = logging.getLogger("parley")

# What `parley` exits with; `parley --help` and docs/operators.md list them.
EXIT_OK = 0
EXIT_FAILED = 1  # it ran and something failed: a process, a call, a name already taken
EXIT_SETUP = 2  # it could not run: bad settings or arguments, a missing program, no database

EXIT_CODES = """exit codes:
  0  done (for `parley run`: stopped on Ctrl-C or SIGTERM)
  1  it ran and failed: a call not answered, a user that exists already, a process that failed
  2  it could not run: bad settings or arguments, a missing program (kamailio), no database
"""

# Commands that work on an existing database and must not create an empty one by connecting.
_NEEDS_DATABASE = {"users", "api-keys", "api", "ingest", "jobs", "sync"}


def _settings(args: argparse.Namespace) -> Any:
    import yaml

    from admin.settings import Settings, get_settings
    from admin.settings_errors import describe

    if getattr(args, "config", None):
        os.environ["PARLEY_CONFIG"] = str(Path(args.config).resolve())
    source = os.environ.get("PARLEY_CONFIG")
    where = f"{source} and PARLEY_* variables" if source else "PARLEY_* variables, no file"
    try:
        settings = get_settings()
    except ValidationError as error:
        problems = describe(error, Settings)
    except (OSError, ValueError, TypeError, yaml.YAMLError) as error:
        problems = [str(error)]
    else:
        if args.command in _NEEDS_DATABASE or getattr(args, "db_command", None) == "current":
            _require_database(settings)
        return settings
    print(f"parley: invalid settings (from {where}):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    print("Every setting is described in docs/operators.md.", file=sys.stderr)
    raise SystemExit(EXIT_SETUP)


def _require_database(settings: Any) -> None:
    """Stops a command that would otherwise connect to, and so create, an empty database."""
    from admin.db import display_url
    from admin.schema import current_revision

    url = settings.database_url()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.exists():
            return
        missing = f"there is no database at {path.absolute()}"
    else:
        try:
            if current_revision(url) is not None:
                return
        except Exception:  # unreachable now: the command itself says so, and may wait
            return
        missing = f"the database {display_url(url)} has no Parley tables"
    print(
        f"parley: {missing} (data_dir: {settings.data_dir}).\n"
        "Create it with `parley db upgrade` (`parley run` does that), or point at the one you "
        "have: --config FILE, PARLEY_DATA_DIR, or database.url.",
        file=sys.stderr,
    )
    raise SystemExit(EXIT_SETUP)


def cmd_run(args: argparse.Namespace) -> int:
    from admin.logs import configure
    from admin.processes import drain_edge, platform_specs, write_worker_reset
    from admin.startup_report import StartupReport
    from admin.supervisor import Supervisor
    from telephony.edge import EdgeUnavailable, find_kamailio, write_files

    settings = _settings(args)
    configure("parley", level=settings.log_level, fmt=settings.log_format)
    try:
        find_kamailio()
    except EdgeUnavailable as error:
        print(f"parley: {error}", file=sys.stderr)
        return EXIT_SETUP
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _print_paths(settings)
    if not _upgrade_database(settings):
        return EXIT_SETUP
    _edge_notices(settings)
    for notice in settings.model_notices():
        print(f"parley: {notice}", file=sys.stderr)
    from admin.sync_commands import sync_settings

    if not sync_settings(settings):  # disclosures (rendered) and lines, before any call
        return EXIT_SETUP
    from telephony.metrics import clear_figures

    clear_figures(settings.events_dir())  # a worker no longer configured must not show as down
    edge = settings.edge_config()
    cfg_path = write_files(edge)
    env = {"PARLEY_CONFIG": os.environ["PARLEY_CONFIG"]} if "PARLEY_CONFIG" in os.environ else {}
    supervisor = Supervisor(
        platform_specs(settings, edge, cfg_path, env),
        backoff_s=settings.restart_backoff_s,
        drain=lambda: drain_edge(edge),
        on_exit=lambda spec, cause: write_worker_reset(settings, spec, cause),
    )

    def stop(signum: int, _frame: object) -> None:
        supervisor.stop_requested.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info(
        "parley is starting",
        extra={
            "sip": f"{settings.sip.host}:{settings.sip.port}",
            "workers": settings.sip.workers,
            "capacity": settings.sip.call_capacity,
        },
    )
    StartupReport(settings, supervisor.stop_requested).start()
    return supervisor.run()


def _print_paths(settings: Any) -> None:
    """Where this platform keeps its data, stated once: a wrong folder shows at once."""
    from admin.db import display_url

    print(
        f"Parley: data in {settings.data_dir}\n"
        f"  database: {display_url(settings.database_url())}\n"
        f"  keys: {settings.keys_file()}",
        file=sys.stderr,
        flush=True,
    )


def _edge_notices(settings: Any) -> None:
    """Says what the edge will accept, and makes its TLS pair when none is configured."""
    sip = settings.sip
    if sip.tls.enabled:
        certificate, key = settings.tls_files()
        if sip.tls.certificate is None:
            from admin.tls_files import ensure_self_signed

            hosts = [h for h in (sip.advertise_host, sip.host) if h and h != "0.0.0.0"]
            created = ensure_self_signed(certificate, key, hosts=hosts or ["127.0.0.1"])
            state = "generated" if created else "using the"
            print(
                f"parley: SIP over TLS on port {sip.tls.port}: {state} self-signed certificate "
                f"{certificate} (set sip.tls.certificate and sip.tls.private_key for a real one)",
                file=sys.stderr,
            )
    if sip.anonymous_sources:
        print(
            "parley: callers from "
            + ", ".join(sip.anonymous_sources)
            + " need no trunk (sip.anonymous_sources); everyone else must match one of "
            + f"{len(sip.trunks)} trunk(s) in sip.trunks or gets 403",
            file=sys.stderr,
        )


def _upgrade_database(settings: Any) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    from admin.db import display_url
    from admin.schema import upgrade

    url = settings.database_url()
    log.info("upgrading the database schema", extra={"database": display_url(url)})
    try:
        upgrade(url)
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        print(f"parley: cannot upgrade {display_url(url)}: {reason}", file=sys.stderr)
        return False
    return True


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from admin.logs import configure

    settings = _settings(args)
    configure("db", level=settings.log_level, fmt=settings.log_format)
    return EXIT_OK if _upgrade_database(settings) else EXIT_SETUP


def cmd_db_current(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from admin.db import display_url
    from admin.schema import current_revision, head_revision

    settings = _settings(args)
    url = settings.database_url()
    try:
        current = current_revision(url)
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        print(f"parley: cannot read {display_url(url)}: {reason}", file=sys.stderr)
        return 2
    head = head_revision()
    state = "up to date" if current == head else f"behind head {head}; run: parley db upgrade"
    print(f"{display_url(url)}: revision {current or '(empty)'}, {state}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from admin.event_pipeline import start_shipper
    from admin.logs import configure
    from admin.sync_commands import worker_disclosures
    from admin.worker_loss import HostStampedSpool, reset_event, worker_host
    from agent.failover import EnginePool
    from agent.profiles import create_session, needs_server
    from telephony.readiness import LineReadiness
    from telephony.worker import serve

    settings = _settings(args)
    configure(f"worker-{args.index}", level=settings.log_level, fmt=settings.log_format)
    config = settings.worker_config(args.index)
    spool = settings.events_dir() / f"worker-{args.index}.jsonl"
    host = worker_host(settings.events.source)
    stored = HostStampedSpool(spool, host=host, segment_bytes=settings.events.segment_bytes)
    # Whatever calls an earlier run of this worker left live in storage are over.
    stored.emit(reset_event(worker=args.index, host=host, cause="boot"))
    outlet = _with_live_fanout(settings, args.index, stored)
    shipper = start_shipper(settings, spool)
    engines = settings.engine.urls()
    readiness = LineReadiness(
        settings.lines_config(), lambda line: engines if needs_server(line.agent) else ()
    )
    served = {url: readiness.health[url] for url in engines if url in readiness.health}
    pool = EnginePool(served) if served else None  # None: no line uses Parley's engine

    def session(line: Any) -> Any:
        target = settings.session_target(line)
        if pool is not None:
            target = dataclasses.replace(target, engines=pool)
        return create_session(line.agent, target)

    try:
        serve(
            config,
            router=settings.router(),
            session_factory=session,
            outlet=outlet,
            disclosures=worker_disclosures(settings),
            readiness=readiness,
            background=readiness.run,
            recordings=settings.recording_store(),
            transcriber=_consent_transcriber(settings),
        )
    except RuntimeError as error:
        log.error("media worker failed", extra={"error": str(error)})
        return 1
    finally:
        if shipper is not None:
            shipper.stop()
    return 0


def _consent_transcriber(settings: Any) -> Any:
    """Speech to text for lines whose callers consent by voice: the engine server's
    transcription sessions (None when no line asks for spoken consent)."""
    if not any(line.consent.method == "spoken" for line in settings.lines):
        return None
    from agent.profiles import engine_headers
    from agent.remote import RealtimeTranscriber

    def transcriber(line: Any) -> RealtimeTranscriber:
        target = settings.session_target(line)
        return RealtimeTranscriber(target.engine_url, headers=engine_headers(target.engine_token))

    return transcriber


def _with_live_fanout(settings: Any, source: int | str, stored: EventOutlet) -> EventOutlet:
    """The spool, and the live fan-out that escalation, the API and dashboards subscribe to
    (Redis when configured, else this process's socket in the run directory)."""
    from telephony.fanout import FanoutOutlet, TeeOutlet

    try:
        live = FanoutOutlet.live(settings.redis_url, settings.run_dir(), source)
    except OSError as error:
        # Calls are still answered and stored; only live views miss this worker's events.
        log.error("live event fan-out could not start", extra={"error": str(error)})
        return stored
    return TeeOutlet(stored, live)


def cmd_ingest(args: argparse.Namespace) -> int:
    from admin.event_pipeline import run_ingester
    from admin.logs import configure

    settings = _settings(args)
    configure("ingest", level=settings.log_level, fmt=settings.log_format)
    result: int = run_ingester(settings)
    return result


def cmd_escalation(args: argparse.Namespace) -> int:
    import asyncio

    from admin.event_pipeline import start_shipper
    from admin.logs import configure
    from admin.speech import SpeechMaker
    from escalation.control import ServiceControl, control_inbox
    from escalation.service import EscalationService, worker_sender
    from telephony.events import JsonlOutlet

    settings = _settings(args)
    configure("escalation", level=settings.log_level, fmt=settings.log_format)
    config = settings.escalation_config()
    spool = settings.events_dir() / "escalation.jsonl"
    stored = JsonlOutlet(spool, segment_bytes=settings.events.segment_bytes)
    outlet = _with_live_fanout(settings, "escalation", stored)  # for the dashboard's board
    shipper = start_shipper(settings, spool)

    speech = SpeechMaker(settings.speech_dir())
    speech.prune()

    async def serve() -> None:
        warm = asyncio.create_task(speech.warm_up())
        escalation = EscalationService(config, outlet, worker_sender(config), speak=speech)
        inbox = control_inbox(config)
        await inbox.start(ServiceControl(escalation).handle)
        service = asyncio.create_task(escalation.run())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, service.cancel)
        log.info(
            "escalation service up",
            extra={"queues": len(config.queues), "supervisors": len(config.supervisors)},
        )
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await service
        finally:
            warm.cancel()
            await inbox.close()

    try:
        asyncio.run(serve())
    finally:
        outlet.close()
        if shipper is not None:
            shipper.stop()
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from admin.jobs.commands import run

    return run(args, _settings(args))


def cmd_engine(args: argparse.Namespace) -> int:
    from admin.logs import configure
    from admin.settings import loopback
    from agent.app import EngineOptions, serve
    from agent.device import DeviceError, resolve_device

    settings = _settings(args)
    configure("engine", level=settings.log_level, fmt=settings.log_format)
    engine = settings.engine
    host = args.host or engine.host
    if not loopback(host) and not engine.token_value():
        print(
            f"parley: the engine would listen on {host}, beyond this machine, with no token: "
            "set engine.token (PARLEY_ENGINE__TOKEN) so that only Parley's workers can use it",
            file=sys.stderr,
        )
        return EXIT_SETUP
    try:
        resolve_device(engine.device)
    except DeviceError as error:
        print(f"parley: {error}", file=sys.stderr)
        return EXIT_SETUP
    serve(
        EngineOptions(
            host=host,
            port=args.port or engine.port,
            knowledge_bases=dict(engine.knowledge_bases),
            vad_threads=engine.vad_threads,
            asr_threads=engine.asr_threads,
            batching=not args.no_batching,
            prerender=engine.prerender,
            token=engine.token_value(),
            device=engine.device,
        )
    )
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    from telephony.edge import render_config, render_dispatcher_list

    settings = _settings(args)
    edge = settings.edge_config()
    print(render_dispatcher_list(edge) if args.dispatcher else render_config(edge))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from admin.db import display_url

    settings = _settings(args)
    shown = json.loads(settings.model_dump_json())
    if shown["database"]["url"]:
        shown["database"]["url"] = display_url(shown["database"]["url"])  # no password
    if shown["redis_url"]:
        shown["redis_url"] = display_url(shown["redis_url"])
    print(json.dumps(shown, indent=2))
    return 0


def _caller_id(value: str) -> str:
    if not re.fullmatch(r"\+?[A-Za-z0-9._-]{1,40}", value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a calling number or user name (digits with an optional +, or "
            "letters, digits, . _ -)"
        )
    return value


def cmd_dial(args: argparse.Namespace) -> int:
    from telephony.phonemedia import parse_keys
    from telephony.softphone import (
        CODEC_CHOICES,
        DialError,
        DialPlan,
        Softphone,
        load_wav_16k,
        save_wav_16k,
    )

    try:
        play = load_wav_16k(Path(args.play)) if args.play else b""
        keys = parse_keys(args.keys or "")
    except (OSError, DialError, ValueError) as error:
        print(f"parley dial: {error}", file=sys.stderr)
        return 2
    codecs = (CODEC_CHOICES[args.codec],) if args.codec else tuple(CODEC_CHOICES.values())
    plan = DialPlan(
        uri=args.uri,
        play_pcm=play,
        dtmf=args.dtmf or "",
        dtmf_at_s=args.dtmf_at,
        keys=keys,
        hold_s=args.hold,
        max_s=args.max,
        count=args.count,
        codecs=codecs,
        hangup=not args.no_bye,
        rtp_timeout_s=args.rtp_timeout,
        bind_host=args.bind,
        media_public_host=args.media_address,
        tls=args.tls
        or ";transport=tls" in args.uri.lower()
        or args.uri.lower().startswith("sips:"),
        srtp=args.srtp,
        username=args.user,
        password=os.environ.get("PARLEY_DIAL_PASSWORD") if args.user else None,
        caller=args.caller,
    )
    if not args.quiet:
        print(f"dialling {args.uri} ({args.count} call(s))...", file=sys.stderr, flush=True)
    try:
        phone = Softphone(plan)
        results = phone.run()
    except DialError as error:
        print(f"parley dial: {error}", file=sys.stderr)
        return 2
    summaries = []
    for result in results:
        summary = result.summary()
        if args.record:
            path = Path(args.record)
            if len(results) > 1:
                path = path.with_name(f"{path.stem}-{result.index}{path.suffix}")
            save_wav_16k(path, result.received_pcm())
            summary["recording"] = str(path)
        if args.timeline:
            summary["frame_times_ns"] = [t for _, t in result.received]
        summaries.append(summary)
        if not args.quiet:
            state = "answered" if result.answered else "not answered"
            print(
                f"call {result.index}: {state}, ended {result.status_code} {result.reason}, "
                f"codec {result.codec or '-'}, "
                f"{len(result.received) * 20 / 1000:.1f}s audio received",
                file=sys.stderr,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=1))
    code = 0 if all(r.answered for r in results) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    if args.no_bye:
        os._exit(code)  # leave without BYE, as a caller whose network died would
    # Everything is written before pjsua2 shuts down; the process then ends without running
    # interpreter finalizers over library objects that are already gone.
    phone.close()
    os._exit(code)


def cmd_phone(args: argparse.Namespace) -> int:
    from telephony.deskphone import (
        DeskError,
        DeskEvent,
        DeskEventKind,
        DeskPhone,
        DeskPlan,
    )
    from telephony.phonemedia import parse_keys
    from telephony.softphone import DialError, load_wav_16k, save_wav_16k

    password = args.password or os.environ.get("PARLEY_PHONE_PASSWORD")
    if not password:
        print("parley phone: give --password or set PARLEY_PHONE_PASSWORD", file=sys.stderr)
        return 2
    try:
        plan = DeskPlan(
            registrar=args.registrar,
            username=args.user,
            password=password,
            bind_host=args.bind,
            port=args.port,
            answer_after_s=args.answer_after,
            decline=args.decline,
            echo=args.echo,
            play_pcm=load_wav_16k(Path(args.play)) if args.play else b"",
            keys=parse_keys(args.keys or ""),
            hangup_after_s=args.hangup_after,
            calls=args.calls,
            max_s=args.max,
            register_only=args.register_only,
            register_timeout_s=args.register_timeout,
        )
    except (OSError, DialError, ValueError) as error:
        print(f"parley phone: {error}", file=sys.stderr)
        return 2

    def progress(event: DeskEvent) -> None:
        # A failed registration is said once, at the end, even with -q.
        if not args.quiet and event.kind is not DeskEventKind.REGISTER_FAILED:
            print(event.line(), file=sys.stderr, flush=True)

    phone = DeskPhone(plan)
    try:
        result = phone.run(progress)
    except DeskError as error:
        print(f"parley phone: {error}", file=sys.stderr)
        return 2
    summary = result.summary()
    if args.record and result.calls:
        save_wav_16k(Path(args.record), result.calls[0].received_pcm())
        summary["calls"][0]["recording"] = str(args.record)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    shortfall = result.shortfall(plan)
    if shortfall is not None:
        print(f"parley phone: {shortfall}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # As `parley dial`: everything is written before pjsua2 shuts down in order, and the
    # process ends without finalizers running over library objects that are already gone.
    phone.close()
    os._exit(0 if shortfall is None else 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley",
        description="Parley: a self-hosted contact center where a duplex voice model "
        "answers phone calls.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--version", action="version", version=f"parley {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start the whole platform (SIP edge + media workers)")
    run.set_defaults(func=cmd_run)

    db = sub.add_parser("db", help="manage the database schema (Alembic migrations)")
    db_actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_upgrade = db_actions.add_parser(
        "upgrade", help="apply every pending migration (parley run does this at start)"
    )
    db_upgrade.set_defaults(func=cmd_db_upgrade)
    db_current = db_actions.add_parser(
        "current", help="print the database's schema revision and whether it is up to date"
    )
    db_current.set_defaults(func=cmd_db_current)

    worker = sub.add_parser("worker", help="run one media worker (parley run starts these)")
    worker.add_argument("--index", type=int, required=True, help="worker number, from 0")
    worker.set_defaults(func=cmd_worker)

    ingest = sub.add_parser(
        "ingest", help="store call events in the database (parley run starts it)"
    )
    ingest.set_defaults(func=cmd_ingest)

    from admin.jobs.commands import add_parser as add_jobs_parser

    add_jobs_parser(sub, func=cmd_jobs)

    from admin.api.commands import add_parsers as add_api_parsers

    add_api_parsers(sub, settings=_settings)  # api, users, api-keys

    from admin.sync_commands import add_parser as add_sync_parser

    add_sync_parser(sub, settings=_settings)

    from admin.call_commands import add_parser as add_call_parser

    add_call_parser(sub, settings=_settings)

    from admin.audit_commands import add_parser as add_audit_parser

    add_audit_parser(sub, settings=_settings)

    from admin.compliance_commands import add_parsers as add_compliance_parsers

    add_compliance_parsers(sub, settings=_settings)  # hold, recording, erase

    escalation = sub.add_parser(
        "escalation",
        help="run the escalation service: triggers, queues, offers to supervisors "
        "(parley run starts it)",
    )
    escalation.set_defaults(func=cmd_escalation)

    engine = sub.add_parser(
        "engine",
        help="run the embedded voice engine server (parley run starts it)",
        description="The engine server: Parley's voice engine behind a WebSocket that speaks a "
        "subset of the OpenAI Realtime protocol (/v1/realtime), with GET /healthz and "
        "GET /metrics (Prometheus). Beyond loopback it needs engine.token. The protocol it "
        "serves: docs/engine-protocol.md.",
    )
    engine.add_argument("--host", help="listen address (default: engine.host)")
    engine.add_argument("--port", type=int, help="listen port (default: engine.port)")
    engine.add_argument(
        "--no-batching",
        action="store_true",
        help="no batching across calls: one VAD pass per window, one Whisper pass per utterance",
    )
    engine.set_defaults(func=cmd_engine)

    edge = sub.add_parser("edge", help="print the generated Kamailio edge configuration")
    edge.add_argument("--dispatcher", action="store_true", help="print the dispatcher list instead")
    edge.set_defaults(func=cmd_edge)

    config = sub.add_parser("config", help="print the effective settings as JSON")
    config.set_defaults(func=cmd_config)

    dial = sub.add_parser(
        "dial",
        help="place a test call: play audio, record the reply, send DTMF",
        description="Place calls from this process (a softphone) and report what happened.",
    )
    dial.add_argument("uri", help="SIP URI to call, e.g. sip:100@127.0.0.1:5060")
    dial.add_argument("--play", metavar="WAV", help="audio to send (any rate, 16-bit PCM WAV)")
    dial.add_argument("--record", metavar="WAV", help="write what the far end sent (16 kHz)")
    dial.add_argument("--dtmf", metavar="DIGITS", help="RFC 4733 digits to send, e.g. 12#")
    dial.add_argument(
        "--keys",
        metavar="S:DIGITS,...",
        help="more keys at their own times after answer, e.g. 1:0,6:5551234#",
    )
    dial.add_argument(
        "--dtmf-at", type=float, default=0.5, metavar="S", help="seconds after answer"
    )
    dial.add_argument("--hold", type=float, default=2.0, metavar="S", help="stay on after playing")
    dial.add_argument("--max", type=float, default=60.0, metavar="S", help="hang up after this")
    dial.add_argument(
        "--rtp-timeout", type=float, default=15.0, metavar="S", help="hang up after S without RTP"
    )
    dial.add_argument("--count", type=int, default=1, help="parallel calls (1-4)")
    dial.add_argument("--codec", choices=["g722", "pcmu", "pcma"], help="offer only this codec")
    dial.add_argument("--json", metavar="FILE", help="write a JSON summary of every call")
    dial.add_argument(
        "--timeline", action="store_true", help="include frame receive times in --json"
    )
    dial.add_argument("--no-bye", action="store_true", help="vanish at the end without BYE")
    dial.add_argument(
        "--bind", default="127.0.0.1", metavar="ADDR", help="this caller's own address"
    )
    dial.add_argument(
        "--media-address", metavar="ADDR", help="write this address into SDP (a NAT's outside)"
    )
    dial.add_argument(
        "--tls", action="store_true", help="use TLS (implied by sips: or ;transport=tls)"
    )
    dial.add_argument(
        "--srtp", choices=["off", "optional", "required"], default="off", help="SRTP (SDES)"
    )
    dial.add_argument(
        "--caller",
        default="parley-dial",
        type=_caller_id,
        metavar="NUMBER",
        help="the calling number (the From user), e.g. +14155550123: the line's rules for "
        "notices and recording consent follow the caller's place",
    )
    dial.add_argument(
        "--user",
        help="digest user name for a trunk; the password is read from PARLEY_DIAL_PASSWORD",
    )
    dial.add_argument("-q", "--quiet", action="store_true")
    dial.set_defaults(func=cmd_dial)

    phone = sub.add_parser(
        "phone",
        help="be a supervisor's desk phone: register, ring, answer, speak, record, press keys",
        description="A SIP desk phone in this process: registers with digest credentials, "
        "rings on incoming calls and answers them, plays audio, records what it hears, presses "
        "keys (RFC 4733) and hangs up. Exits 0 once the planned calls are done, 1 when "
        "registration failed or no call came within --max. The password may instead come "
        "from PARLEY_PHONE_PASSWORD.",
    )
    phone.add_argument("--registrar", required=True, metavar="URI", help="e.g. sip:127.0.0.1:5060")
    phone.add_argument("--user", required=True, help="the user name to register as")
    phone.add_argument("--password", help="digest password (or set PARLEY_PHONE_PASSWORD)")
    phone.add_argument("--bind", default="127.0.0.1", metavar="ADDR", help="the phone's address")
    phone.add_argument("--port", type=int, default=0, help="SIP port to listen on (0: any)")
    phone.add_argument(
        "--answer-after", type=float, default=0.0, metavar="S", help="ring this long first"
    )
    phone.add_argument("--decline", action="store_true", help="answer 486 Busy Here instead")
    phone.add_argument(
        "--echo", action="store_true", help="send back what it hears (to measure round trips)"
    )
    phone.add_argument("--play", metavar="WAV", help="what the supervisor says on answering")
    phone.add_argument("--record", metavar="WAV", help="write what the first call sent (16 kHz)")
    phone.add_argument(
        "--keys", metavar="S:DIGITS,...", help="keys to press after answering, e.g. 2.5:4,6:5"
    )
    phone.add_argument(
        "--hangup-after",
        type=float,
        metavar="S",
        help="hang up S after answering (default: wait for the far end)",
    )
    phone.add_argument("--calls", type=int, default=1, help="take this many calls, then exit")
    phone.add_argument("--max", type=float, default=60.0, metavar="S", help="give up after this")
    phone.add_argument("--json", metavar="FILE", help="write a JSON summary, frame times included")
    phone.add_argument(
        "--register-only", action="store_true", help="register, report, unregister, exit"
    )
    phone.add_argument(
        "--register-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="give up when the registrar has not answered within S (default 5)",
    )
    phone.add_argument("-q", "--quiet", action="store_true")
    phone.set_defaults(func=cmd_phone)
    _accept_config_after_command(parser)
    return parser


CONFIG_HELP = "YAML settings file (or set PARLEY_CONFIG); before or after the command"


def _accept_config_after_command(parser: argparse.ArgumentParser) -> None:
    """`parley users create x --config f.yaml` as well as `parley --config f.yaml users …`.
    SUPPRESS: a subcommand without the option leaves the one given before it alone."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
                _accept_config_after_command(command)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("parley")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    # A crash inside the C libraries (pjsua2, torch, onnxruntime) then leaves a Python stack.
    faulthandler.enable()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "dial":
        logging.basicConfig(level=logging.WARNING)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
