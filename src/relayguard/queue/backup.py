"""Backups of queued messages, and re-injection from them.

A backup is a directory (mode 0700: it holds other people's mail) with, per message,

* `QID.eml` — the message exactly as queued (`postcat -bh -q QID`: headers and body), and
* `QID.json` — its envelope (schema `relayguard.backup/1`): sender, the recipients still to be
  delivered, arrival time, original queue, size, the SASL login and client address it came
  with, the SHA-256 of `QID.eml`;

plus `manifest.json` describing the operation. Every file is written to a temporary name,
fsync'ed and renamed, and the directory is fsync'ed, before the caller may delete anything.

`restore` re-injects each message with its original envelope: `sendmail -i -f SENDER --
RCPT...` (`-C DIR` for another instance) with the content on stdin — argv only, no shell. A
`QID.restored` marker makes a second restore of the same directory skip what is already back.
The new copy gets a new queue ID and arrival time (Postfix sets those); the old ones stay in
the backup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..timefmt import iso as _iso
from .postqueue import (
    Envelope,
    QueuedMessage,
    parse_postcat_envelopes,
    quote_address,
    unquote_address,
)
from .tools import PostfixTools, QueueError, valid_queue_id

SCHEMA = "relayguard.backup/1"
MANIFEST = "manifest.json"
WORKERS = 8  # postcat runs are I/O bound; a few in parallel keep 10,000 backups short


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Write, fsync and rename into place: after this returns (and the directory is fsync'ed)
    the file survives a crash; a crash before leaves only a `.tmp` file, never a half file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def new_backup_dir(base: str | os.PathLike[str], action: str, now: float | None = None) -> Path:
    """`BASE/20260621T083430Z-delete-1a2b3c/`, created 0700 (and BASE too, when missing)."""
    base = Path(base)
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        d = base / f"{stamp}-{action}-{secrets.token_hex(3)}"
        d.mkdir(mode=0o700)
    except OSError as exc:
        raise QueueError(f"cannot create a backup directory in {base}: {exc.strerror} "
                         "(use --backup-dir DIR)") from None
    return d


@dataclass
class BackupReport:
    directory: Path
    saved: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0


def _external_recipients(env: Envelope, msg: QueuedMessage) -> list[dict[str, Any]]:
    """The recipients still to deliver, in the external (quoted) form sendmail expects:
    postqueue's spelling when it lists the same address, else quoted here."""
    listed = {unquote_address(r.address).casefold(): r for r in msg.recipients}
    out = []
    for internal in env.recipients:
        r = listed.get(internal.casefold())
        out.append({"address": r.address if r else quote_address(internal),
                    "internal": internal,
                    "delay_reason": r.delay_reason if r else None})
    return out


def _envelope_sender(env: Envelope, msg: QueuedMessage) -> str:
    if not env.sender:
        return ""
    if msg.sender and unquote_address(msg.sender).casefold() == env.sender.casefold():
        return msg.sender
    return quote_address(env.sender)


def split_postcat(out: bytes, qid: str) -> tuple[Envelope, bytes] | None:
    """Envelope and exact content of one `postcat -ebh -q QID` output (one run instead of two).

    The content sits between postcat's MESSAGE CONTENTS and HEADER EXTRACTED markers. Content
    may contain lines that imitate a marker, but it comes before the real HEADER EXTRACTED
    line, so that one is the *last* line-start occurrence; envelope records never start with
    `***`, so the first MESSAGE CONTENTS marker is the real one."""
    head = out.split(b"\n", 1)[0].decode("utf-8", "replace")
    m = re.fullmatch(r"\*\*\* ENVELOPE RECORDS (\S+) \*\*\*", head)
    if m is None or m.group(1).rsplit("/", 1)[-1] != qid:
        return None
    path = m.group(1).encode()
    begin = out.find(b"\n*** MESSAGE CONTENTS " + path + b" ***\n")
    end_marker = b"\n*** HEADER EXTRACTED " + path + b" ***\n"
    end = out.rfind(end_marker)
    if begin < 0 or end < begin:
        return None
    content_start = out.index(b"\n", begin + 1) + 1
    content = out[content_start:end + 1]
    records = out[:begin + 1] + out[end + 1:]  # envelope + extracted records, no content
    env = parse_postcat_envelopes(records.decode("utf-8", "replace")).get(qid)
    return (env, content) if env is not None else None


def backup_one(tools: PostfixTools, dest: Path, msg: QueuedMessage) -> tuple[str, int | str]:
    """Save one message; ("saved", bytes), ("gone", "") or ("failed", reason)."""
    qid = msg.queue_id
    if not valid_queue_id(qid):
        return "failed", "malformed queue ID"
    r = tools.run("postcat", "-ebh", "-q", qid)
    if r.returncode != 0:
        err = r.stderr
        if "No such file or directory" in err:
            return "gone", ""
        return "failed", (err.strip().splitlines() or [f"postcat exited {r.returncode}"])[-1]
    parts = split_postcat(r.raw_stdout, qid)
    if parts is None:
        return "failed", "postcat output not understood"
    env, content = parts
    meta = {
        "schema": SCHEMA,
        "queue_id": qid,
        "queue_name": msg.queue_name,          # where it was when selected
        "file_queue": env.queue_name,          # where postcat found it (hold, for delete)
        "arrival_time": int(env.arrival_time or msg.arrival_time),
        "arrival": _iso(env.arrival_time or msg.arrival_time),
        "message_size": msg.size,
        "sender": _envelope_sender(env, msg),
        "sender_internal": env.sender,
        "recipients": _external_recipients(env, msg),
        "done_recipients": env.done_recipients,
        "original_recipients": env.original_recipients,
        "forced_expire": msg.forced_expire,
        "sasl_username": env.sasl_username,
        "client_address": env.client_address,
        "attributes": env.attributes,
        "content_file": f"{qid}.eml",
        "content_bytes": len(content),
        "content_sha256": hashlib.sha256(content).hexdigest(),
        "backed_up_at": _iso(time.time()),
        "host": socket.gethostname(),
        "config_dir": tools.config_dir,
    }
    write_durable(dest / f"{qid}.eml", content)
    write_durable(dest / f"{qid}.json",
                  json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8"))
    return "saved", len(content)


def backup_messages(tools: PostfixTools, dest: Path, msgs: Iterable[QueuedMessage],
                    action: str, selector: dict[str, Any] | None = None) -> BackupReport:
    """Back up every message (a few postcat runs in parallel), then fsync the directory and
    write the manifest. Only `report.saved` may be deleted afterwards."""
    report = BackupReport(dest)
    msgs = list(msgs)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(lambda m: backup_one(tools, dest, m), msgs))
    for m, (status, info) in zip(msgs, outcomes, strict=True):
        if status == "saved":
            report.saved.append(m.queue_id)
            report.bytes += int(info)
        elif status == "gone":
            report.gone.append(m.queue_id)
        else:
            report.failed.append((m.queue_id, str(info)))
    manifest = {
        "schema": SCHEMA, "action": action, "created": _iso(time.time()),
        "host": socket.gethostname(), "uid": os.getuid(), "config_dir": tools.config_dir,
        "selector": selector or {}, "messages": len(report.saved), "queue_ids": report.saved,
    }
    write_durable(dest / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
    fsync_dir(dest)
    return report


# ------------------------------------------------------------------------------- restore

@dataclass
class BackupEntry:
    directory: Path
    meta: dict[str, Any]

    @property
    def queue_id(self) -> str:
        return str(self.meta["queue_id"])

    @property
    def sender(self) -> str:
        return str(self.meta.get("sender") or "")

    @property
    def recipients(self) -> list[str]:
        return [str(r["address"]) for r in self.meta.get("recipients", [])]

    @property
    def restored_marker(self) -> Path:
        return self.directory / f"{self.queue_id}.restored"

    @property
    def restored(self) -> bool:
        return self.restored_marker.exists()

    def content(self) -> bytes:
        data = (self.directory / f"{self.queue_id}.eml").read_bytes()
        want = self.meta.get("content_sha256")
        if want and hashlib.sha256(data).hexdigest() != want:
            raise QueueError(f"{self.queue_id}.eml does not match its checksum (damaged backup)")
        return data


def load_backup(directory: str | os.PathLike[str]) -> list[BackupEntry]:
    """The messages of one backup directory, oldest arrival first. Raises QueueError when the
    directory is not a relayguard backup."""
    d = Path(directory)
    if not d.is_dir():
        raise QueueError(f"{d}: no such backup directory")
    entries = []
    try:
        names = sorted(p for p in d.glob("*.json") if p.name != MANIFEST)
    except OSError as exc:
        raise QueueError(f"{d}: cannot read ({exc.strerror})") from None
    for p in names:
        try:
            meta = json.loads(p.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise QueueError(f"{p}: unreadable backup envelope ({exc})") from None
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
            raise QueueError(f"{p}: not a relayguard backup envelope (schema {SCHEMA})")
        qid = meta.get("queue_id")
        if not isinstance(qid, str) or not valid_queue_id(qid) or p.stem != qid:
            raise QueueError(f"{p}: bad queue_id in backup envelope")
        rcpts = meta.get("recipients")
        if not isinstance(rcpts, list) or not all(
                isinstance(r, dict) and isinstance(r.get("address"), str) for r in rcpts):
            raise QueueError(f"{p}: bad recipients in backup envelope")
        if not isinstance(meta.get("sender", ""), str):
            raise QueueError(f"{p}: bad sender in backup envelope")
        if not (d / f"{qid}.eml").is_file():
            raise QueueError(f"{p}: its message file {qid}.eml is missing")
        entries.append(BackupEntry(d, meta))
    if not entries and not (d / MANIFEST).exists():
        raise QueueError(f"{d}: not a relayguard backup (no manifest.json, no messages)")
    entries.sort(key=lambda e: (e.meta.get("arrival_time") or 0, e.queue_id))
    return entries


def reinject(tools: PostfixTools, entry: BackupEntry) -> str | None:
    """Submit one backed-up message with its original envelope; None on success, else why."""
    rcpts = entry.recipients
    if not rcpts:
        return "no recipients left to deliver"
    try:
        content = entry.content()
    except OSError as exc:
        return f"cannot read {entry.queue_id}.eml: {exc.strerror}"
    except QueueError as exc:
        return str(exc)
    # -i: a line with a single dot is content, not the end of input. "--": recipients are
    # operands even when one starts with "-".
    r = tools.run("sendmail", "-i", "-f", entry.sender, "--", *rcpts, stdin=content, timeout=120)
    if r.returncode != 0:
        err = r.stderr.strip().splitlines()
        return f"sendmail exited {r.returncode}: {err[-1] if err else ''}"
    marker = {"restored_at": _iso(time.time()), "uid": os.getuid(),
              "config_dir": tools.config_dir}
    write_durable(entry.restored_marker, json.dumps(marker).encode("utf-8"))
    return None


def mark_dir_synced(directory: Path) -> None:
    """fsync the backup directory after restore markers were written."""
    with contextlib.suppress(OSError):
        fsync_dir(directory)
