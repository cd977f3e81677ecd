"""`parley call`: commands for a live call, sent to the media worker that holds it.

parley call hold CALL_ID            the agent steps out; the caller hears hold music
parley call unhold CALL_ID          back to the agent
parley call hangup CALL_ID
parley call transfer CALL_ID sip:desk@pbx.example.com
parley call mode CALL_ID takeover   (with a supervisor on the call)
parley call whisper CALL_ID "Offer the refund"
parley call hand-back CALL_ID --note "Refund approved"
parley call status CALL_ID          where the call stands (phase, mode, agent, supervisor)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from telephony import commands
from telephony.commands import Command, CommandError
from telephony.delivery import WorkerInboxes, deliver
from telephony.phases import Mode

log = logging.getLogger("parley")

ACTOR = "cli"


def add_parser(sub: Any, *, settings: Callable[[argparse.Namespace], Any]) -> None:
    call = sub.add_parser(
        "call",
        help="command a live call: hold, unhold, hangup, transfer, mode, whisper, hand-back, "
        "status",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = call.add_subparsers(dest="call_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        parser.add_argument("call_id", help="the call's id (GET /calls, or the call.started event)")
        return parser

    action("hold", help_text="put the caller on hold; the agent steps out")
    action("unhold", help_text="take the caller off hold, back to the agent")
    hangup = action("hangup", help_text="end the call")
    hangup.add_argument("--reason", default="operator", help="recorded as the end reason")
    transfer = action("transfer", help_text="transfer the caller (SIP REFER)")
    transfer.add_argument("target", help="a sip: or sips: URI")
    mode = action("mode", help_text="change the supervisor's mode")
    mode.add_argument("mode", choices=[m.value for m in Mode])
    whisper = action("whisper", help_text="coach the agent; the caller hears nothing")
    whisper.add_argument("text")
    hand_back = action("hand-back", help_text="give the call back to the agent")
    hand_back.add_argument("--note", help="a fact for the agent, e.g. what was agreed")
    supervise = action("supervise", help_text="ring a supervisor's phone into the call")
    supervise.add_argument("phone", help="a phone's name from the sip.phones settings")
    action("dismiss", help_text="take the supervisor off the call, back to the agent")
    action("status", help_text="where the call stands; changes nothing")

    def run(args: argparse.Namespace) -> int:
        found = settings(args)
        try:
            command = build(args, found)
        except (CommandError, KeyError) as error:
            print(f"parley call: {error}", file=sys.stderr)
            return 2
        reply = asyncio.run(deliver(WorkerInboxes.from_settings(found), command)).reply
        if not reply.ok:
            print(f"parley call: {reply.error}", file=sys.stderr)
            return 1
        print(json.dumps(reply.data))
        return 0

    call.set_defaults(func=run)


def build(args: argparse.Namespace, settings: Any) -> Command:
    call_id, what = args.call_id, args.call_command
    if what == "hold":
        command: Command = commands.Hold(call_id=call_id, actor=ACTOR)
    elif what == "unhold":
        command = commands.Unhold(call_id=call_id, actor=ACTOR)
    elif what == "hangup":
        command = commands.Hangup(call_id=call_id, actor=ACTOR, reason=args.reason)
    elif what == "transfer":
        command = commands.Transfer(call_id=call_id, actor=ACTOR, target=args.target)
    elif what == "mode":
        command = commands.SetMode(call_id=call_id, actor=ACTOR, mode=Mode(args.mode))
    elif what == "whisper":
        command = commands.Whisper(call_id=call_id, actor=ACTOR, text=args.text)
    elif what == "supervise":
        uri = settings.phone_uri(args.phone)
        command = commands.AttachLeg(call_id=call_id, actor=ACTOR, uri=uri)
    elif what == "dismiss":
        command = commands.DetachLeg(call_id=call_id, actor=ACTOR)
    elif what == "status":
        command = commands.Status(call_id=call_id, actor=ACTOR)
    else:
        command = commands.ReattachAgent(call_id=call_id, actor=ACTOR, note=args.note)
    commands.encode(command)  # refuses a malformed id or URI here, with the field named
    return command
