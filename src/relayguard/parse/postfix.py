"""What Postfix (and the kernel firewall) said: a message text → (event, queue ID, fields).

Written for speed: one prefix/`find` cascade, no regex on the common paths (prefixes are
compared as slices: compiled, `str.startswith` costs a slow argument parse). Addresses
come from attackers, so every field is data and nothing here assumes it is well formed.
"""

from __future__ import annotations

import re
from typing import Any

from .event import (
    AUTH_ERROR,
    AUTH_FAILURE,
    BOUNCE_NOTICE,
    CLIENT,
    CONNECT,
    DELIVERY,
    DISCONNECT,
    EXPIRED,
    FIREWALL,
    LOST_CONNECTION,
    MESSAGE_ID,
    OTHER,
    PICKUP,
    QUEUED,
    REJECT,
    REMOTE_REPLY,
    REMOVED,
)

# Short IDs are hex; long IDs (enable_long_queue_ids) use a base-52 alphabet without vowels.
QUEUE_ID = re.compile(r"(?:[0-9A-F]{5,12}|[0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz]{10,20})\Z")




def _queue_id_shape(token: str) -> bool:
    """For an alphanumeric token: short IDs are upper-case hex; long IDs carry the `z` that
    separates their time and inode parts. Plain words (`warning`, `statistics`) fail."""
    if len(token) <= 12 and (token.isupper() or token.isdigit()):
        # Postfix writes no upper-case word before ": " (NOQUEUE is handled before): checking
        # for A-F only would cost more than the whole rest of this test.
        return True
    return "z" in token and len(token) >= 12 and not token.islower() and QUEUE_ID.match(token) is not None


POSTFIX_SERVICES = frozenset(
    """smtpd smtp lmtp qmgr cleanup pickup local virtual pipe bounce defer trace error discard
    postscreen dnsblog tlsproxy anvil scache tlsmgr trivial-rewrite rewrite showq postlogd verify
    flush proxymap proxywrite master postsuper postqueue postdrop sendmail postfix-script postmap
    postalias postmulti postlog oqmgr spawn retry relay submission smtps""".split()
)

Parsed = tuple[str, "str | None", "dict[str, Any]"]


def split_client(text: str) -> tuple[str, str, str | None]:
    """`name[ip]:port` → (name, ip, port). IPv6 addresses live inside the brackets."""
    i = text.rfind("[")
    if i < 0:
        return text, "", None
    j = text.find("]", i)
    if j < 0:
        return text[:i], text[i + 1:], None
    port = text[j + 2:] if text[j + 1:j + 2] == ":" else None
    return text[:i], text[i + 1:j], port or None


def _client_fields(text: str, fields: dict[str, Any]) -> None:
    name, ip, port = split_client(text)
    fields["client_name"] = name
    fields["client_ip"] = ip
    if port:
        fields["client_port"] = port


def _kv(parts: list[str], fields: dict[str, Any], names: dict[str, str]) -> None:
    for part in parts:
        k, sep, v = part.partition("=")
        if sep:
            name = names.get(k)
            if name:
                fields[name] = v


_CLIENT_KEYS = {"sasl_method": "sasl_method", "sasl_username": "sasl_username",
                "sasl_sender": "sasl_sender", "orig_queue_id": "orig_queue_id",
                "orig_client": "orig_client"}
_DELIVERY_KEYS = {"relay": "relay", "delay": "delay", "dsn": "dsn", "orig_to": "orig_recipient",
                  "conn_use": "conn_use"}


def _angle(text: str, start: int, stop: str) -> tuple[str, int]:
    """The address between `<` at `start` and the `>` followed by `stop` (tolerant of junk)."""
    end = text.find(">" + stop, start)
    if end < 0:
        end = text.rfind(">")
        if end < start:
            return text[start:], len(text)
    return text[start:end], end + 1


def parse_queue_message(rest: str) -> tuple[str, dict[str, Any]]:
    """The text after `QUEUEID: `."""
    c = rest[:4]
    if c == "clie":
        if rest[:7] == "client=":
            parts = rest[7:].split(", ")
            first = parts[0]
            i = first.rfind("[")
            j = first.find("]", i)
            if i < 0 or j < 0:
                fields: dict[str, Any] = {"client_name": first, "client_ip": ""}
            else:
                fields = {"client_name": first[:i], "client_ip": first[i + 1:j]}
                if j + 1 < len(first) and first[j + 1] == ":":
                    fields["client_port"] = first[j + 2:]
            if len(parts) > 1:
                for part in parts[1:]:
                    k, sep, v = part.partition("=")
                    name = _CLIENT_KEYS.get(k)
                    if name:
                        fields[name] = v
            return CLIENT, fields
    elif c == "to=<":
        status_at = rest.find(", status=", 4)
        if status_at < 0:  # truncated: a delivery without its outcome tells nothing reliable
            return OTHER, {"text": rest}
        addr, end = _angle(rest, 4, ", ")
        fields = {"recipient": addr}
        status_at = rest.find(", status=", end)
        for part in (rest[end + 2:status_at] if status_at >= 0 else rest[end + 2:]).split(", "):
            k, sep, v = part.partition("=")
            name = _DELIVERY_KEYS.get(k)
            if name:
                fields[name] = v
        if "orig_recipient" in fields:
            fields["orig_recipient"] = fields["orig_recipient"].strip("<>")
        if status_at >= 0:
            status, has_reason, reason = rest[status_at + 9:].partition(" ")
            fields["status"] = status
            if has_reason:
                fields["reason"] = reason[1:-1] if reason[:1] == "(" and reason[-1:] == ")" else reason
        return DELIVERY, fields
    elif c == "from":
        if rest[:6] == "from=<":
            addr, end = _angle(rest, 6, ", ")
            fields = {"sender": addr}
            tail = rest[end:]
            if ", status=expired" in tail:
                return EXPIRED, fields
            for part in tail.split(", "):
                k, sep, v = part.partition("=")
                if k == "size":
                    fields["size"] = _int(v)
                elif k == "nrcpt":
                    fields["nrcpt"] = _int(v.split(" ", 1)[0])
            return QUEUED, fields
    elif c == "mess":
        if rest[:11] == "message-id=":
            mid = rest[11:]
            if mid[:1] == "<" and mid[-1:] == ">":
                mid = mid[1:-1]
            return MESSAGE_ID, {"message_id": mid}
    elif rest == "removed":
        return REMOVED, {}
    elif c == "uid=":
        uid, _, tail = rest[4:].partition(" ")
        fields = {"uid": uid}
        if tail[:6] == "from=<":
            fields["sender"] = _angle(tail, 6, "")[0]
        return PICKUP, fields
    elif c == "reje" or c == "milt":
        if rest[:8] == "reject: ":
            return REJECT, _reject(rest[8:])
        if rest[:15] == "milter-reject: ":
            return REJECT, _reject(rest[15:])
    elif c == "host":
        # `host mx[1.2.3.4] said: 554 ...` / `host mx[...] refused to talk to me: 554 ...`
        sp = rest.find(" ", 5)
        if sp > 0:
            remote = rest[5:sp]
            colon = rest.find(": ", sp)
            if colon > 0:
                return REMOTE_REPLY, {"relay": remote, "reason": rest[colon + 2:]}
    elif c == "send":
        if rest[:34] == "sender non-delivery notification: ":
            return BOUNCE_NOTICE, {"bounce_queue_id": rest[34:].strip()}
    return OTHER, {"text": rest}


def _reject(text: str) -> dict[str, Any]:
    """`RCPT from name[ip]: 554 5.7.1 <x>: Relay access denied; from=<a> to=<b> proto=ESMTP helo=<h>`."""
    fields: dict[str, Any] = {}
    stage, _, tail = text.partition(" from ")
    fields["stage"] = stage
    client, sep, reply = tail.partition(": ")
    if not sep:
        fields["reason"] = text
        return fields
    _client_fields(client, fields)
    semi = reply.rfind("; from=<")
    if semi < 0:
        semi = reply.rfind("; proto=")
    info = ""
    if semi >= 0:
        reply, info = reply[:semi], reply[semi + 2:]
    fields["reason"] = reply
    code = reply.split(" ", 2)
    if len(code) > 1 and code[1][:1].isdigit() and "." in code[1]:
        fields["dsn"] = code[1]
    if info[:6] == "from=<":
        fields["sender"], end = _angle(info, 6, " ")
        info = info[end:].lstrip()
    if info[:4] == "to=<":
        fields["recipient"], end = _angle(info, 4, " ")
        info = info[end:].lstrip()
    for part in info.split(" "):
        k, sep, v = part.partition("=")
        if sep and k in ("proto", "helo"):
            fields[k] = v.strip("<>")
    return fields


def parse_postfix(message: str) -> Parsed:
    """A Postfix daemon's message → (event, queue_id, fields)."""
    colon = message.find(": ")
    if colon > 0:
        token = message[:colon]
        if token == "NOQUEUE":
            rest = message[colon + 2:]
            if rest[:8] == "reject: ":
                return REJECT, None, _reject(rest[8:])
            if rest[:8] == "filter: " or rest[:15] == "milter-reject: ":
                return OTHER, None, {"text": rest}
            return OTHER, None, {"text": message}
        # The queue-ID test, inlined (it runs on most lines): words like `warning` fail at once.
        if 5 <= colon <= 20 and token.isalnum() and _queue_id_shape(token):
            ev, fields = parse_queue_message(message[colon + 2:])
            return ev, token, fields
    if message[:13] == "connect from ":
        fields = {}
        _client_fields(message[13:], fields)
        return CONNECT, None, fields
    if message[:16] == "disconnect from ":
        fields = {}
        client, _, counts = message[16:].partition(" ")
        _client_fields(client, fields)
        if counts:
            fields["commands"] = counts
        return DISCONNECT, None, fields
    if message[:9] == "warning: " and " authentication failed: " in message:
        return _auth_failure(message[9:])
    if message[:22] == "lost connection after ":
        after, _, client = message[22:].partition(" from ")
        fields = {"after": after}
        _client_fields(client, fields)
        return LOST_CONNECTION, None, fields
    return OTHER, None, {"text": message}


def _auth_failure(text: str) -> Parsed:
    """`unknown[1.2.3.4]: SASL LOGIN authentication failed: REASON[, sasl_username=U]`."""
    client, sep, tail = text.partition(": SASL ")
    if not sep:
        return OTHER, None, {"text": "warning: " + text}
    fields: dict[str, Any] = {}
    _client_fields(client, fields)
    method, _, reason = tail.partition(" authentication failed: ")
    fields["sasl_method"] = method
    user_at = reason.rfind(", sasl_username=")
    if user_at >= 0:
        fields["sasl_username"] = reason[user_at + 16:]
        reason = reason[:user_at]
    fields["reason"] = reason
    # A dead SASL back end (saslauthd, dovecot auth) is not a password guess.
    if "Connection lost to authentication server" in reason or "Invalid authentication mechanism" in reason:
        return AUTH_ERROR, None, fields
    return AUTH_FAILURE, None, fields


_FIREWALL_KEYS = {"SRC": "src", "DST": "dst", "PROTO": "proto", "SPT": "spt", "DPT": "dpt",
                  "IN": "in_iface", "OUT": "out_iface"}


def parse_firewall(message: str) -> Parsed | None:
    """iptables/nftables LOG lines: `... IN=eth1 OUT=eth0 SRC=a DST=b ... PROTO=TCP SPT=1 DPT=25`."""
    if " SRC=" not in message or "DPT=" not in message:
        return None
    fields: dict[str, Any] = {}
    for tok in message.split(" "):
        k, sep, v = tok.partition("=")
        if sep:
            name = _FIREWALL_KEYS.get(k)
            if name:
                fields[name] = v
    if "dpt" in fields:
        fields["dpt"] = _int(fields["dpt"])
    return FIREWALL, None, fields


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
