"""The edge's routing script: who may call, how fast, and where in-dialog requests may go.

`telephony.edge` writes the module list and parameters; this module writes the routes. The
edge is Parley's security boundary, so every request from outside passes, in order:

1. GUARD: a banned source is ignored; a source over its request rate is banned for a while
   (pike); an oversized message is refused (513).
2. TRUNK: the source must belong to a trunk (by address, with digest credentials when the
   trunk has them) or to the anonymous ranges; otherwise 403.
3. New calls: the trunk's numbers, the global and the trunk's calls-per-second, the trunk's
   concurrent calls, its SRTP policy; then a worker is chosen (dispatcher) and the dialog is
   tracked (dialog module) with the edge on its path (record_route).
4. In-dialog requests are relayed only inside dialogs the edge set up, and only to one of its
   workers (or, from a worker, back to the caller): never to a Request-URI of the sender's
   choosing.
5. Supervisors' phones register here (REGISTER with digest credentials, each phone as itself
   only). A worker may ring a supervisor's phone, and nothing else: a registered one where it
   registered from, a fixed one at its configured URI.

Every refusal is counted in a `parley_*` statistic (`kamcmd stats.get_statistics all`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from telephony.phones import SupervisorPhone
from telephony.trunks import SrtpPolicy, Trunk, numbers_regex

WORKER_SET = 1
DISPATCH_ALGORITHM = 4  # round-robin over the active workers; a busy one answers 486
RETRY_AFTER_S = 5
ALLOWED_METHODS = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER"
SUPERVISOR_RING_MS = 30_000  # a supervisor's phone rings this long at most
REALM = "parley"
ANONYMOUS = "anonymous"

# Refusals, each counted in its own statistic (see docs/operators.md).
STATS = (
    "parley_banned_sources",  # sources banned for flooding
    "parley_dropped_banned",  # requests ignored from a banned source
    "parley_rejected_oversize",
    "parley_rejected_malformed",
    "parley_rejected_no_trunk",
    "parley_rejected_auth",
    "parley_rejected_number",
    "parley_rejected_cps",
    "parley_rejected_trunk_busy",
    "parley_rejected_srtp",
    "parley_rejected_relay",  # in-dialog requests outside the edge's own dialogs
    "parley_rejected_no_worker",  # every worker busy, down or not ready
    "parley_phone_registrations",  # supervisor phones registered (or refreshed)
    "parley_supervisor_calls",  # worker calls to a supervisor's phone routed
    "parley_calls_routed",
)


@dataclass(frozen=True, slots=True)
class WorkerRoute:
    """A worker as the edge reaches it, and the hosts its Contact may name."""

    uri: str  # sip:127.0.0.1:5071
    port: int
    contact_hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScriptInputs:
    workers: tuple[WorkerRoute, ...]
    trunks: tuple[Trunk, ...]
    anonymous_sources: tuple[str, ...]
    anonymous_srtp: SrtpPolicy
    calls_per_s: int
    max_message_bytes: int
    fr_timer_ms: int
    fr_inv_timer_ms: int
    in_dialog_fr_timer_ms: int
    phones: tuple[SupervisorPhone, ...] = ()


def _quoted(value: str) -> str:
    # Values reach here validated (trunk names, CIDRs, credentials, hosts): none holds a
    # quote, a backslash or a '$' that Kamailio would read as a variable.
    if any(c in value for c in '"\\$\n\r'):
        raise ValueError(f"unsafe value for the edge script: {value!r}")
    return f'"{value}"'


def _reject(code: int, reason: str, stat: str, *, retry_after: bool = False) -> list[str]:
    lines = [f'update_stat("{stat}", "+1");']
    if retry_after:
        lines.append(f'append_to_reply("Retry-After: {RETRY_AFTER_S}\\r\\n");')
    lines += [f'sl_send_reply("{code}", "{reason}");', "exit;"]
    return lines


def _indent(lines: Sequence[str], depth: int = 1) -> list[str]:
    pad = "    " * depth
    return [pad + line if line else line for line in lines]


def _digest(trunk: Trunk) -> list[str]:
    """Checks the trunk's digest credentials, challenging (407) or refusing (403)."""
    assert trunk.username is not None and trunk.password is not None
    return [
        'if (!is_present_hf("Proxy-Authorization")) {',
        f'    proxy_challenge("{REALM}", "0");',
        "    exit;",
        "}",
        f"if ($au != {_quoted(trunk.username)}) {{",
        *_indent(_reject(403, "Forbidden", "parley_rejected_auth")),
        "}",
        f'pv_proxy_authenticate("{REALM}", {_quoted(trunk.password)}, "0");',
        "$var(auth) = $rc;",
        "if ($var(auth) == -2) {",  # a wrong password
        *_indent(_reject(403, "Forbidden", "parley_rejected_auth")),
        "}",
        "if ($var(auth) < 0) {",  # stale or replayed nonce, malformed credentials: ask again
        f'    proxy_challenge("{REALM}", "0");',
        "    exit;",
        "}",
        "consume_credentials();",
    ]


def _trunk_route(inputs: ScriptInputs) -> list[str]:
    lines = ["route[TRUNK] {", '    $var(trunk) = "";']
    for trunk in inputs.trunks:
        if not trunk.sources:
            continue
        lines.append(f'    if (is_in_subnet("$si", {_quoted(",".join(trunk.sources))})) {{')
        lines.append(f"        $var(trunk) = {_quoted(trunk.name)};")
        if trunk.authenticates:
            lines += _indent(_digest(trunk), 2)
        lines += ["        return;", "    }"]
    if inputs.anonymous_sources:
        cidrs = _quoted(",".join(inputs.anonymous_sources))
        lines += [
            f'    if (is_in_subnet("$si", {cidrs})) {{',
            f'        $var(trunk) = "{ANONYMOUS}";',
            "        return;",
            "    }",
        ]
    roaming = [t for t in inputs.trunks if not t.sources]
    for trunk in roaming:
        assert trunk.username is not None
        lines += [
            f'    if (is_present_hf("Proxy-Authorization") && $au == {_quoted(trunk.username)}) {{',
            f"        $var(trunk) = {_quoted(trunk.name)};",
            *_indent(_digest(trunk), 2),
            "        return;",
            "    }",
        ]
    if roaming:
        # Trunks that may call from anywhere identify themselves by their credentials.
        lines += [f'    proxy_challenge("{REALM}", "0");', "    exit;"]
    else:
        lines += _indent(_reject(403, "Forbidden", "parley_rejected_no_trunk"))
    lines.append("}")
    return lines


def _srtp_check(policy: SrtpPolicy) -> list[str]:
    if policy == "required":
        return [
            '    if (!has_body("application/sdp") || !sdp_with_transport("RTP/SAVP")) {',
            *_indent(_reject(488, "SRTP Required", "parley_rejected_srtp"), 2),
            "    }",
        ]
    if policy == "off":
        return [
            '    if (has_body("application/sdp") && sdp_with_transport("RTP/SAVP")) {',
            *_indent(_reject(488, "SRTP Not Accepted", "parley_rejected_srtp"), 2),
            "    }",
        ]
    return []


def _new_call_route(inputs: ScriptInputs) -> list[str]:
    """Numbers, rates, concurrency and SRTP for a new call from $var(trunk)."""
    lines = [
        "route[NEW_CALL] {",
        f'    if (!pl_check("global", "TAILDROP", "{inputs.calls_per_s}")) {{',
        *_indent(_reject(503, "Too Many Calls", "parley_rejected_cps", retry_after=True), 2),
        "    }",
    ]
    anonymous_srtp = _srtp_check(inputs.anonymous_srtp)
    if anonymous_srtp:
        lines += [f'    if ($var(trunk) == "{ANONYMOUS}") {{', *_indent(anonymous_srtp), "    }"]
    for trunk in inputs.trunks:
        body: list[str] = []
        regex = numbers_regex(trunk.numbers)
        if regex is not None:
            _quoted(regex.removesuffix("$"))  # nothing else unsafe in it
            body += [
                # A '$' anchors the regex; in a comparison Kamailio does not read it as a
                # variable.
                f'    if ($rU == $null || !($rU =~ "{regex.removesuffix("$")}$")) {{',
                *_indent(_reject(403, "Number Not Allowed", "parley_rejected_number"), 2),
                "    }",
            ]
        if trunk.calls_per_s is not None:
            pipe = _quoted(f"trunk-{trunk.name}")
            body += [
                f'    if (!pl_check({pipe}, "TAILDROP", "{trunk.calls_per_s}")) {{',
                *_indent(
                    _reject(503, "Too Many Calls", "parley_rejected_cps", retry_after=True), 2
                ),
                "    }",
            ]
        if trunk.max_calls is not None:
            body += [
                '    get_profile_size("trunk", "$var(trunk)", "$var(active)");',
                f"    if ($var(active) >= {trunk.max_calls}) {{",
                *_indent(
                    _reject(503, "Trunk Busy", "parley_rejected_trunk_busy", retry_after=True), 2
                ),
                "    }",
            ]
        body += _srtp_check(trunk.srtp)
        if body:
            lines += [f"    if ($var(trunk) == {_quoted(trunk.name)}) {{", *_indent(body), "    }"]
    lines += [
        # The dialog is tracked before record_route() adds its id to the Record-Route.
        "    dlg_manage();",
        '    set_dlg_profile("trunk", "$var(trunk)");',
        "    record_route();",
        "}",
    ]
    return lines


def _worker_target_route(inputs: ScriptInputs) -> list[str]:
    """Maps an in-dialog Request-URI (a worker's Contact) to that worker in $var(worker), or
    refuses the request."""
    lines = ["route[WORKER_TARGET] {"]
    for worker in inputs.workers:
        hosts = " || ".join(f"$rd == {_quoted(h)}" for h in worker.contact_hosts)
        lines += [
            f"    if ($rp == {worker.port} && ({hosts})) {{",
            f"        $var(worker) = {_quoted(worker.uri)};",
            "        return;",
            "    }",
        ]
    lines += [
        '    if (is_method("ACK")) {',
        "        # An ACK for a negative final reply names the original Request-URI: the",
        "        # transaction it ends absorbs it. Any other ACK goes nowhere.",
        "        t_check_trans();",
        "        exit;",
        "    }",
        '    xlog("L_WARN", "edge: in-dialog $rm from $si to a foreign target refused\\n");',
        *_indent(_reject(403, "Relaying Denied", "parley_rejected_relay")),
        "}",
    ]
    return lines


_FIXED_ROUTES = """
request_route {
    # The edge's own workers are trusted: their requests go back to callers.
    $var(from_worker) = 0;
    if (ds_is_from_list("__SET__")) {
        $var(from_worker) = 1;
    } else {
        route(GUARD);
    }
    route(REQINIT);

    if (is_method("CANCEL")) {
        # A CANCEL must follow its INVITE to the worker that has it.
        if (t_check_trans()) {
            t_relay();
        } else {
            sl_send_reply("481", "Call/Transaction Does Not Exist");
        }
        exit;
    }

    # Retransmissions are absorbed by the transaction they belong to.
    if (!is_method("ACK")) {
        if (t_precheck_trans()) {
            t_check_trans();
            exit;
        }
        t_check_trans();
    }

    if (has_totag()) {
        route(WITHINDLG);
        exit;
    }

    if ($var(from_worker) == 1) {
        # Workers start no calls through the edge but to a supervisor's phone.
        if (is_method("INVITE")) {
            route(SUPERVISOR_LEG);
        }
        sl_send_reply("403", "Forbidden");
        exit;
    }

    if (is_method("REGISTER")) {
        route(REGISTRAR);
        exit;
    }

    # A caller must not choose our next hop for a new call.
    remove_hf("Route");

    if (is_method("ACK")) {
        # An ACK without a to-tag belongs to nothing we know.
        exit;
    }

    if (!is_method("INVITE|OPTIONS")) {
        # MESSAGE, SUBSCRIBE, ...: the edge is no presence server.
        append_to_reply("Allow: __ALLOW__\\r\\n");
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }

    route(TRUNK);

    if (is_method("OPTIONS")) {
        # New requests go only to the edge's own workers, so an out-of-dialog OPTIONS is
        # about the edge: a keepalive from a trunk or a load balancer.
        append_to_reply("Allow: __ALLOW__\\r\\n");
        sl_send_reply("200", "OK");
        exit;
    }

    route(NEW_CALL);
    route(DISPATCH);
    exit;
}

route[GUARD] {
    if ($sht(ban=>$si) != $null) {
        update_stat("parley_dropped_banned", "+1");
        drop;
    }
    # This host itself (load tests, local tools) and the trunks' own addresses (a busy
    # carrier sends more requests than any flood threshold; its calls-per-second and
    # concurrency limits apply instead) are never banned; everyone else over the per-source
    # rate is ignored for a while (no answer: a flooder learns nothing and the edge spends
    # nothing on it).
    if (!is_in_subnet("$si", "__UNBANNED__") && !pike_check_req()) {
        $sht(ban=>$si) = 1;
        update_stat("parley_banned_sources", "+1");
        xlog("L_ALERT", "edge: source $si banned for flooding\\n");
        drop;
    }
    if ($ml > __MAX_BYTES__) {
        update_stat("parley_rejected_oversize", "+1");
        sl_send_reply("513", "Message Too Large");
        exit;
    }
    # SDP addresses must be IP literals: pjmedia would resolve a host name on the worker's
    # SIP thread (a slow DNS answer stalls every call on it), and pjlib aborts the worker
    # outright on an address of 254 characters or more.
    if (has_body("application/sdp")
            && (search_body("IN IP4 ([^ \\r\\n]*[^0-9. \\r\\n]|[0-9.]{16})")
                || search_body("IN IP6 ([^ \\r\\n]*[^0-9a-fA-F:. \\r\\n]|[0-9a-fA-F:.]{46})"))) {
        update_stat("parley_rejected_malformed", "+1");
        sl_send_reply("488", "SDP Address Not Acceptable");
        exit;
    }
    # A worker provisions two sockets per offered stream out of the 64 its pjlib holds (and
    # aborts when they run out): an offer of three streams or more (audio and video are
    # two) is refused.
    if (has_body("application/sdp") && search_body("\\nm=(.*\\n)+m=(.*\\n)+m=")) {
        update_stat("parley_rejected_malformed", "+1");
        sl_send_reply("488", "Too Many Media Streams");
        exit;
    }
}

route[REQINIT] {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (!sanity_check("17895", "7")) {
        update_stat("parley_rejected_malformed", "+1");
        xlog("L_WARN", "edge: malformed $rm from $si:$sp dropped\\n");
        exit;
    }
}

route[WITHINDLG] {
    if ($var(from_worker) == 0) {
        # Before loose_route(): the dialog module acts on a BYE as it matches it, and a
        # request refused here must not end the dialog it named.
        route(WORKER_TARGET);
    }
    if (!loose_route()) {
        if (is_method("ACK") && t_check_trans()) {
            # ACK for a negative final reply: it ends its INVITE transaction here.
            t_relay();
            exit;
        }
        # No Route header naming us: not a dialog that went through this edge.
        update_stat("parley_rejected_relay", "+1");
        sl_send_reply("404", "Not Here");
        exit;
    }
    if (!is_known_dlg()) {
        # A Route naming the edge on a dialog it never set up: a relay attempt.
        xlog("L_WARN", "edge: in-dialog $rm from $si outside any known dialog refused\\n");
        update_stat("parley_rejected_relay", "+1");
        sl_send_reply("403", "Relaying Denied");
        exit;
    }
    if ($var(from_worker) == 0) {
        $du = $var(worker);
    }
    t_set_fr(__FR_INV__, __FR_DLG__);
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}

route[DISPATCH] {
    if (!ds_select_dst("__SET__", "__ALG__")) {
        xlog("L_WARN", "edge: no worker available for call $ci\\n");
        update_stat("parley_rejected_no_worker", "+1");
        append_to_reply("Retry-After: __RETRY__\\r\\n");
        send_reply("503", "Service Unavailable");
        exit;
    }
    update_stat("parley_calls_routed", "+1");
    xlog("L_INFO", "edge: call $ci -> $du\\n");
    route(TO_WORKER);
}

route[TO_WORKER] {
    t_set_fr(__FR_INV__, __FR__);
    t_on_failure("WORKER_FAILED");
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}

failure_route[WORKER_FAILED] {
    if (t_is_canceled()) {
        exit;
    }
    if (t_branch_timeout() || t_check_status("408")) {
        # Silence from a worker means it is dead or wedged.  Take it out of
        # rotation now; the OPTIONS probes put it back once it answers again.
        xlog("L_WARN", "edge: worker $du timed out on call $ci, marking it down\\n");
        ds_mark_dst("ip");
    }
    if (t_check_status("^(408|480|486|500|503)$") || t_branch_timeout()) {
        # Busy (a worker holds at most a few calls), not ready (its model is loading or
        # lost), overloaded or dead: another worker may still take the call.
        if (ds_next_dst()) {
            xlog("L_INFO", "edge: call $ci failed over to $du after $T_reply_code\\n");
            route(TO_WORKER);
        }
        xlog("L_WARN", "edge: every worker refused call $ci\\n");
        update_stat("parley_rejected_no_worker", "+1");
        append_to_reply("Retry-After: __RETRY__\\r\\n");
        t_reply("503", "Service Unavailable");
        exit;
    }
}

event_route[dispatcher:dst-down] {
    route(WORKER_NAME);
    xlog("L_WARN", "edge: worker $var(worker) is down\\n");
}

event_route[dispatcher:dst-up] {
    route(WORKER_NAME);
    xlog("L_NOTICE", "edge: worker $var(worker) is up\\n");
}

route[WORKER_NAME] {
    # A probe result carries the worker in the R-URI; ds_mark_dst() during a
    # call carries it in the destination URI, while the R-URI is the caller's.
    if ($du != $null) {
        $var(worker) = $du;
    } else {
        $var(worker) = $ru;
    }
}
"""


def _registrar_route(inputs: ScriptInputs) -> list[str]:
    """REGISTER from supervisors' phones: digest credentials, and each phone as itself only."""
    lines = ["route[REGISTRAR] {"]
    registering = [p for p in inputs.phones if p.registers]
    if not registering:
        lines += [
            f'    append_to_reply("Allow: {ALLOWED_METHODS}\\r\\n");',
            '    sl_send_reply("405", "Method Not Allowed");',
            "    exit;",
            "}",
        ]
        return lines
    lines += [
        '    if (!is_present_hf("Authorization")) {',
        f'        www_challenge("{REALM}", "0");',
        "        exit;",
        "    }",
        "    $var(auth) = -2;",
    ]
    for phone in registering:
        assert phone.password is not None
        lines += [
            f"    if ($au == {_quoted(phone.name)}) {{",
            f'        pv_www_authenticate("{REALM}", {_quoted(phone.password)}, "0");',
            "        $var(auth) = $rc;",
            "    }",
        ]
    lines += [
        "    if ($var(auth) == -2) {",  # a wrong password, or a name that is no phone
        '        xlog("L_WARN", "edge: phone registration refused from $si\\n");',
        *_indent(_reject(403, "Forbidden", "parley_rejected_auth"), 2),
        "    }",
        "    if ($var(auth) < 0) {",  # stale or replayed nonce, malformed credentials: ask again
        f'        www_challenge("{REALM}", "0");',
        "        exit;",
        "    }",
        "    if ($tU != $au) {",
        "        # A phone registers itself, never someone else's name.",
        *_indent(_reject(403, "Not Your Name", "parley_rejected_auth"), 2),
        "    }",
        "    consume_credentials();",
        '    if (!save("location")) {',
        "        sl_reply_error();",
        "    }",
        '    update_stat("parley_phone_registrations", "+1");',
        "    exit;",
        "}",
    ]
    return lines


def _supervisor_leg_route(inputs: ScriptInputs) -> list[str]:
    """A worker ringing a supervisor's phone: registered ones where they are, fixed ones at
    their URI; any other target is refused."""
    lines = [
        "route[SUPERVISOR_LEG] {",
        "    # The worker's outbound proxy Route names the edge: the next hop is ours to pick.",
        '    remove_hf("Route");',
    ]
    for phone in inputs.phones:
        if phone.uri is not None:
            lines += [
                f"    if ($rU == {_quoted(phone.name)}) {{",
                f"        $ru = {_quoted(phone.uri)};",
                "        route(TO_PHONE);",
                "    }",
            ]
    if any(p.registers for p in inputs.phones):
        lines += [
            '    if (!lookup("location")) {',
            '        sl_send_reply("480", "Supervisor Phone Not Registered");',
            "        exit;",
            "    }",
            "    route(TO_PHONE);",
        ]
    lines += [
        '    sl_send_reply("404", "No Such Supervisor Phone");',
        "    exit;",
        "}",
        "",
        "route[TO_PHONE] {",
        "    dlg_manage();",
        "    record_route();",
        '    update_stat("parley_supervisor_calls", "+1");',
        f"    t_set_fr({SUPERVISOR_RING_MS}, {inputs.fr_timer_ms});",
        "    if (!t_relay()) {",
        "        sl_reply_error();",
        "    }",
        "    exit;",
        "}",
    ]
    return lines


def _unbanned(inputs: ScriptInputs) -> str:
    """This host and every trunk source: the ranges the per-source flood ban never applies to."""
    ranges = ["127.0.0.0/8", "::1/128"]
    for trunk in inputs.trunks:
        ranges += [r for r in trunk.sources if r not in ranges]
    return _quoted(",".join(ranges)).strip('"')


def render_routes(inputs: ScriptInputs) -> str:
    fixed = (
        _FIXED_ROUTES.replace("__ALLOW__", ALLOWED_METHODS)
        .replace("__SET__", str(WORKER_SET))
        .replace("__ALG__", str(DISPATCH_ALGORITHM))
        .replace("__RETRY__", str(RETRY_AFTER_S))
        .replace("__FR_INV__", str(inputs.fr_inv_timer_ms))
        .replace("__FR__", str(inputs.fr_timer_ms))
        .replace("__FR_DLG__", str(inputs.in_dialog_fr_timer_ms))
        .replace("__MAX_BYTES__", str(inputs.max_message_bytes))
        .replace("__UNBANNED__", _unbanned(inputs))
    )
    generated = [
        *_registrar_route(inputs),
        "",
        *_supervisor_leg_route(inputs),
        "",
        *_trunk_route(inputs),
        "",
        *_new_call_route(inputs),
        "",
        *_worker_target_route(inputs),
    ]
    return fixed + "\n" + "\n".join(generated) + "\n"
