"""The TOML configuration: bundled defaults (`default.toml`, documented) merged with the user's,
and every key checked against them.

The schema is derived from default.toml: a key's type is that of its default (integer,
number, true/false, string, list of strings…). What a default cannot say (durations, networks,
listen addresses, URLs, choices, ranges, lists that are empty by default, the tables of
`[[policy.limits]]`) is declared once in `SPECIAL` below. No section takes free keys: every
table's keys are those of default.toml, so a misspelt key or section is an error with a
did-you-mean, never silently ignored.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from . import timefmt

SYSTEM_CONFIG = Path("/etc/relayguard/relayguard.toml")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|[smhdw]?)\s*$")
_UNITS = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# Vocabularies the consumers share with the schema (one definition each).
SEVERITIES = ("critical", "high", "medium", "low")
BAN_BACKENDS = ("state", "nftables", "postfix-access", "command")
RESPOND_MODES = ("alert", "respond")
LIMIT_KEYS = ("sasl_username", "client_address", "sender", "sender_domain")
#: access(5) actions a rate limit may take. DUNNO is "shadow mode": logged, nothing else.
LIMIT_ACTIONS = ("DEFER_IF_PERMIT", "DEFER", "HOLD", "REJECT", "DUNNO")
#: Lookup table types of the check_sasl_access map: postmap output suffix per indexed type;
#: texthash has no index (read into memory).
MAP_TYPES: dict[str, str | None] = {"hash": ".db", "btree": ".db", "cdb": ".cdb", "lmdb": ".lmdb",
                                    "texthash": None}
BAN_PLACEHOLDERS = ("ip", "seconds", "reason")
HOOK_PLACEHOLDERS = ("user", "local", "domain", "reason", "event")


def duration(value: Any) -> float:
    """Seconds from a setting or an option: a number of seconds, or "250ms", "90s", "20m", "2h",
    "1d", "1w". ValueError (with a message for the user) when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r} (use e.g. 90s, 20m, 2h, 1d)")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"bad duration {value!r} (use e.g. 90s, 20m, 2h, 1d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"bad duration {value!r}: negative")
    return seconds


class ConfigError(ValueError):
    """The configuration is unreadable or wrong; the message (one line, naming the file and the
    `section.key`) is for the user. Every configuration error is one of these."""


# ------------------------------------------------------------------------------ value kinds

class Bad(Exception):
    """A value does not fit its spec: the message completes "expected …"; or, with
    `whole=True`, is the whole complaint."""

    def __init__(self, message: str, where: str = "", whole: bool = False) -> None:
        super().__init__(message)
        self.where = where  # appended to the key's path (a list index, a table field)
        self.whole = whole


def shown(value: Any) -> str:
    """A value as the user wrote it (TOML), shortened for one line."""
    if isinstance(value, dict):
        return "a table"
    text = toml_value(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)


def _range_text(lo: float | None, hi: float | None, open_lo: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" {'in (' if open_lo else 'from '}{lo:g}{', ' if open_lo else ' to '}{hi:g}" \
               f"{']' if open_lo else ''}"
    if lo is not None:
        return f" {'>' if open_lo else '>='} {lo:g}"
    return ""


@dataclass(frozen=True)
class Spec:
    """One kind of value: `expect` completes "expected …"; `check` raises Bad."""

    expect: str
    test: Callable[[Any], bool] = lambda v: True

    def check(self, value: Any) -> None:
        if not self.test(value):
            raise Bad(self.expect)


# Spec factories are capitalised: in SPECIAL they read as the types they check.
def Int(lo: int | None = 1, hi: int | None = None) -> Spec:
    return Spec(f"an integer{_range_text(lo, hi)}",
                lambda v: _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi))


def Number(lo: float = 0, hi: float | None = None, open_lo: bool = True) -> Spec:
    return Spec(f"a number{_range_text(lo, hi, open_lo)}",
                lambda v: _is_number(v) and (v > lo if open_lo else v >= lo)
                and (hi is None or v <= hi))


BOOL = Spec("true or false", lambda v: isinstance(v, bool))
STR = Spec("a string", lambda v: isinstance(v, str))
PORT = Int(1, 65535)
RATIO = Number(0, 1, open_lo=False)


def Enum(choices: Sequence[str], any_case: bool = False) -> Spec:
    norm = (lambda v: v.upper()) if any_case else (lambda v: v)
    return Spec("one of " + ", ".join(json.dumps(c) for c in choices),
                lambda v: isinstance(v, str) and norm(v) in choices)


def Duration(lo: float = 0, positive: bool = False, whole: bool = False) -> Spec:
    def ok(v: Any) -> bool:
        try:
            s = duration(v)
        except ValueError:
            return False
        return s >= lo and (s > 0 or not positive) and (s == int(s) or not whole)

    if whole:
        what = f"a duration of whole seconds, at least {lo:g}s"
    else:
        what = "a duration such as \"90s\", \"10m\", \"2h\", \"1d\" (or seconds)"
        what += " more than 0" if positive else ""
    return Spec(what, ok)


def _ok(parse: Callable[[str], Any], empty: bool = False) -> Callable[[Any], bool]:
    def test(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        if not v.strip():
            return empty
        try:
            parse(v.strip())
        except ValueError:
            return False
        return True
    return test


def split_host_port(spec: str, default_port: int | None = None) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT`, `:PORT` (host "") or, with `default_port`, a bare address
    (IPv6 too). ValueError when it is not one."""
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if rest else None)
        if not sep or port == "":
            raise ValueError(spec)
    elif spec.count(":") == 1:
        host, _, port = spec.partition(":")
    elif default_port is not None:
        host, port = spec, None
    else:
        raise ValueError(spec)
    if port is None:
        if default_port is None:
            raise ValueError(spec)
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(spec)
    return host, int(port)


def _tcp(spec: str) -> None:
    host, _ = split_host_port(spec)
    if not host:
        raise ValueError(spec)


def _listen_any(spec: str) -> None:  # ":9425": every address
    split_host_port(spec)


def parse_listen(spec: str) -> tuple[str, str, int]:
    """`127.0.0.1:10031`, `[::1]:10031`, `inet:HOST:PORT`, `10031` -> ("tcp", host, port);
    `unix:/path` -> ("unix", path, 0). ValueError when it is neither."""
    spec = spec.strip()
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise ValueError(f"bad listen address {spec!r}: unix: needs a path")
        return ("unix", path, 0)
    if spec.startswith("inet:"):
        spec = spec[5:]
    if spec.isdigit():
        host, port = "127.0.0.1", spec
    elif spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = spec.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"bad listen address {spec!r} (use HOST:PORT, [IPv6]:PORT or unix:PATH)")
    return ("tcp", host, int(port))


def _policy_listen(spec: str) -> None:
    parse_listen(spec)


def _resolver(spec: str) -> None:
    ipaddress.ip_address(split_host_port(spec, 53)[0])


def _cidr(spec: str) -> None:
    ipaddress.ip_network(spec, strict=False)


def _map(spec: str) -> None:
    kind, sep, path = spec.partition(":")
    if not sep or kind not in MAP_TYPES or not path.startswith("/"):
        raise ValueError(spec)


def _url(*schemes: str) -> Callable[[str], None]:
    def parse(spec: str) -> None:
        scheme, sep, rest = spec.partition("://")
        if not sep or scheme.lower() not in schemes or not rest:
            raise ValueError(spec)
    return parse


def _octal(spec: str) -> None:
    if not 0 <= int(spec, 8) <= 0o777:
        raise ValueError(spec)


CIDR = Spec("a network or address such as \"10.0.0.0/8\" or \"192.0.2.1\"", _ok(_cidr))
IP = Spec("an IP address", _ok(ipaddress.ip_address))
TCP_LISTEN = Spec("\"HOST:PORT\" or \"[IPv6]:PORT\"", _ok(_tcp))


@dataclass(frozen=True)
class ListOf(Spec):
    """A TOML array whose every element fits `item` (a bare string is not a list)."""

    item: Spec = STR
    nonempty: bool = False

    def check(self, value: Any) -> None:
        if not isinstance(value, list) or (self.nonempty and not value):
            raise Bad(self.expect)
        for i, v in enumerate(value):
            try:
                self.item.check(v)
            except Bad as exc:
                raise Bad(str(exc), f"[{i + 1}]{exc.where}", exc.whole) from None


def list_of(item: Spec, nonempty: bool = False, noun: str = "") -> ListOf:
    what = f"a {'non-empty ' if nonempty else ''}list of {noun or _plural(item.expect)}"
    return ListOf(what, item=item, nonempty=nonempty)


def _plural(expect: str) -> str:
    return {"a string": "strings", "an IP address": "IP addresses"}.get(expect, f"({expect})")


@dataclass(frozen=True)
class OneOrList(Spec):
    """One value or a non-empty list of them (`[policy] listen`)."""

    item: Spec = STR

    def check(self, value: Any) -> None:
        if isinstance(value, list):
            list_of(self.item, nonempty=True).check(value)
        else:
            try:
                self.item.check(value)
            except Bad:
                raise Bad(self.expect) from None


def Argv(placeholders: Sequence[str], nonempty: bool = True) -> Spec:
    """An argv list (no shell): strings whose {placeholders} are known."""
    known = ", ".join("{" + p + "}" for p in placeholders)
    names = re.compile(r"\{(\w*)\}")

    def test(v: Any) -> bool:
        return (isinstance(v, list) and (bool(v) or not nonempty)
                and all(isinstance(a, str) and all(n in placeholders for n in names.findall(a))
                        for a in v))
    return Spec(f"an argv list of strings such as [\"prog\", \"arg\"] (no shell; placeholders "
                f"{known})", test)


@dataclass(frozen=True)
class Tables(Spec):
    """An array of tables (`[[policy.limits]]`), validated item by item."""

    fields: Mapping[str, Spec] = field(default_factory=dict)
    required: Mapping[str, str] = field(default_factory=dict)  # field -> hint
    one_of: tuple[str, ...] = ()

    def check(self, value: Any) -> None:
        if not isinstance(value, list):
            raise Bad(self.expect)
        for i, table in enumerate(value):
            at = f"[{i + 1}]"
            if not isinstance(table, dict):
                raise Bad("a table", at)
            for key, v in table.items():
                spec = self.fields.get(key)
                if spec is None:
                    raise Bad(_unknown("setting", key, self.fields), f"{at}.{key}", whole=True)
                try:
                    spec.check(v)
                except Bad as exc:
                    raise Bad(str(exc), f"{at}.{key}{exc.where}", exc.whole) from None
            for key, hint in self.required.items():
                if key not in table:
                    raise Bad(f"{key} is required ({hint})", at, whole=True)
            if self.one_of and not any(k in table for k in self.one_of):
                raise Bad(f"set {' and/or '.join(self.one_of)}", at, whole=True)


_DETECT_RATIOS = ("deferred_ratio", "missing_message_id_ratio")

#: What default.toml cannot say by its values alone. Keys are dotted paths (fnmatch patterns
#: allowed); every other key takes the type of its default (integer >= 1, number > 0, …).
SPECIAL: dict[str, Spec] = {
    "analyze.trusted": list_of(CIDR, noun="networks (CIDR)"),
    **{f"detect.*.{r}": RATIO for r in _DETECT_RATIOS},
    "detect.direct_smtp.ignore": list_of(IP),
    "detect.blocklisted.extra_patterns": list_of(STR),
    "state.url": Spec("a Redis URL (redis://HOST:PORT/DB, rediss://…, unix://PATH) or \"\"",
                      _ok(_url("redis", "rediss", "unix"), empty=True)),
    "audit.ignore": list_of(STR),
    "dnsbl.timeout": Number(0),
    "dnsbl.resolver": Spec("\"ADDRESS\", \"ADDRESS:PORT\", \"[IPv6]:PORT\" or \"\"",
                           _ok(_resolver, empty=True)),
    "dnsbl.addresses": list_of(IP),
    "password.min_classes": Int(1, 4),
    "password.min_score": Int(0, 4),
    "serve.listen": TCP_LISTEN,
    "policy.listen": OneOrList("\"HOST:PORT\", \"[IPv6]:PORT\", \"unix:PATH\" or a non-empty "
                               "list of them", item=Spec("a listen address", _ok(_policy_listen))),
    "policy.limits": Tables(
        "an array of tables ([[policy.limits]])",
        fields={"key": Enum(LIMIT_KEYS), "max_messages": Int(0), "max_recipients": Int(0),
                "window": Duration(lo=1, whole=True),
                "action": Enum(LIMIT_ACTIONS, any_case=True), "message": STR, "name": STR},
        required={"key": "one of " + ", ".join(LIMIT_KEYS), "window": 'e.g. "1m", "1h", "1d"'},
        one_of=("max_messages", "max_recipients")),
    "policy.allow_users": list_of(STR),
    "policy.allow_clients": list_of(CIDR, noun="addresses or networks"),
    "policy.*_timeout": Duration(positive=True),
    "policy.*_interval": Duration(positive=True),
    "policy.unix_mode": Spec('an octal mode such as "0660"', _ok(_octal)),
    "policy.near_ratio": Number(0, 1),
    "watch.logs": list_of(STR, noun="files"),
    "watch.poll_interval": Duration(),
    "watch.window": Duration(),
    "watch.*_interval": Duration(),
    "watch.ignore_older": Duration(),
    "watch.rotate_grace": Duration(),
    "watch.queue_poll": Duration(),
    "watch.queue_recover": Number(0, 1),
    "watch.metrics_listen": Spec('"ADDRESS:PORT", "[IPv6]:PORT", ":PORT" or ""',
                                 _ok(_listen_any, empty=True)),
    "alert.min_severity": Enum(SEVERITIES),
    "alert.cooldown": Duration(),
    "alert.max_per_hour": Int(0),
    "alert.email.port": PORT,
    "alert.email.to": list_of(STR, noun="addresses"),
    "alert.*.timeout": Number(0),
    "alert.webhook.url": Spec('an http:// or https:// URL or ""',
                              _ok(_url("http", "https"), empty=True)),
    "bruteforce.window": Duration(positive=True),
    "bruteforce.ban_for": Duration(),
    "bruteforce.ban_backend": Enum(BAN_BACKENDS),
    "bruteforce.allow": list_of(CIDR, noun="networks (CIDR)"),
    "bruteforce.nftables_ports": list_of(PORT, nonempty=True, noun="ports"),
    "bruteforce.reload_interval": Duration(),
    "bruteforce.*_command": Argv(BAN_PLACEHOLDERS, nonempty=False),
    "bruteforce.command_timeout": Duration(positive=True),
    **{f"respond.{kind}": Enum(RESPOND_MODES) for kind in
       ("auth_bruteforce", "compromised_account", "trusted_host_relay", "direct_smtp")},
    "respond.min_severity": Enum(SEVERITIES),
    "respond.host_ban_for": Duration(),
    "respond.sasl_access_map": Spec(f"TYPE:/absolute/path with TYPE one of "
                                    f"{', '.join(MAP_TYPES)}, or \"\"", _ok(_map, empty=True)),
    "respond.*hooks": list_of(Argv(HOOK_PLACEHOLDERS), noun="argv lists"),
    "respond.hook_timeout": Duration(positive=True),
    "geo.cache_size": Int(0),
}


def _inferred(path: str, default: Any) -> Spec:
    exact = SPECIAL.get(path)
    if exact is not None:
        return exact
    for pattern, spec in SPECIAL.items():
        if "*" in pattern and fnmatchcase(path, pattern):
            return spec
    if isinstance(default, bool):
        return BOOL
    if isinstance(default, int):
        return Int(1)
    if isinstance(default, float):
        return Number(0)
    if isinstance(default, str):
        return STR
    if isinstance(default, list) and default and all(isinstance(v, str) for v in default):
        return list_of(STR)
    # An empty list (or anything else) says nothing about what it holds: declare it above.
    raise AssertionError(f"default.toml {path}: add its type to config.SPECIAL")


@cache
def schema() -> dict[str, Any]:
    """The defaults' shape with a Spec at every leaf (built once)."""
    def walk(table: dict[str, Any], where: str) -> dict[str, Any]:
        return {k: walk(v, f"{where}{k}.") if isinstance(v, dict) else _inferred(where + k, v)
                for k, v in table.items()}
    return walk(defaults(), "")


# ------------------------------------------------------------------------------ loading

@cache
def _default_text() -> str:
    return resources.files("relayguard").joinpath("default.toml").read_text("utf-8")


def defaults() -> dict[str, Any]:
    return tomllib.loads(_default_text())


def _unknown(what: str, key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f'did you mean "{close[0]}"?' if close else "known: " + ", ".join(known)
    return f"unknown {what} ({hint})"


def _merge(base: dict[str, Any], extra: Mapping[str, Any], shape: dict[str, Any],
           where: str, fail: Callable[[str, str], ConfigError]) -> None:
    """Overlay `extra` on `base`, checking every key and value against `shape`."""
    for key, value in extra.items():
        path = f"{where}{key}"
        if key not in shape:
            raise fail(path, _unknown("section" if isinstance(value, dict) and not where
                                      else "setting", str(key), shape))
        spec = shape[key]
        if isinstance(spec, dict):
            if not isinstance(value, Mapping):
                raise fail(path, f"expected a table ([{path}]), found {shown(value)}")
            _merge(base[key], value, spec, f"{path}.", fail)
            continue
        try:
            spec.check(value)
        except Bad as exc:
            at = f"{path}{exc.where}"
            found = value
            # Name the element that is wrong, not the whole list.
            for part in re.findall(r"\[(\d+)\]|\.(\w+)", exc.where):
                found = found[int(part[0]) - 1] if part[0] else found[part[1]]
            raise fail(at, str(exc) if exc.whole else
                       f"expected {exc}, found {shown(found)}") from None
        base[key] = copy.deepcopy(value)


def validate(cfg: Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    """The defaults overlaid with `cfg` (a whole or partial configuration), every key checked.
    ConfigError names `source` (a file) and the `section.key`."""
    prefix = f"{source}: " if source else ""

    def fail(path: str, message: str) -> ConfigError:
        return ConfigError(f"{prefix}{path}: {message}")

    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{prefix}expected a table of sections, found {shown(cfg)}")
    merged = defaults()
    _merge(merged, cfg, schema(), "", fail)
    return merged


def check_sections(cfg: Mapping[str, Any] | None, *sections: str) -> None:
    """Check the named sections of a configuration built by hand (consumers call this, so a
    bad value is a ConfigError whether or not it came through `load`)."""
    if cfg:
        validate({s: cfg[s] for s in sections if s in cfg})


def read(path: str | Path) -> dict[str, Any]:
    """The TOML of a file, unvalidated; ConfigError when it cannot be read or parsed."""
    try:
        return tomllib.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def load(source: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The effective configuration: defaults, overlaid with `source` — a TOML file, a (partial)
    dict, or None for /etc/relayguard/relayguard.toml when present — every key validated."""
    if isinstance(source, Mapping):
        return _apply(validate(source))
    if source is None:
        if not SYSTEM_CONFIG.exists():
            return _apply(defaults())
        source = SYSTEM_CONFIG
    return _apply(validate(read(source), str(source)))


load_config = load


# ------------------------------------------------------------------------------ TOML out

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        # JSON string escapes are valid TOML basic-string escapes (\uXXXX included); TOML also
        # wants DEL escaped, which JSON leaves alone.
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {type(v).__name__}")


def _is_tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps(cfg: Mapping[str, Any]) -> str:
    """A configuration as TOML (tables in order; `tomllib.loads` gives it back unchanged)."""
    out: list[str] = []

    def table(path: list[str], t: Mapping[str, Any], header: str) -> None:
        plain = [(k, v) for k, v in t.items() if not isinstance(v, dict) and not _is_tables(v)]
        if path and (plain or header == "[["
                     or not any(isinstance(v, dict) or _is_tables(v) for v in t.values())):
            out.append(f"\n{header}{'.'.join(map(_key, path))}{']]' if header == '[[' else ']'}")
        out.extend(f"{_key(k)} = {toml_value(v)}" for k, v in plain)
        for k, v in t.items():
            if _is_tables(v):
                for item in v:
                    table([*path, k], item, "[[")
        for k, v in t.items():
            if isinstance(v, dict):
                table([*path, k], v, "[")

    table([], cfg, "[")
    return "\n".join(out).lstrip("\n") + "\n"


def _apply(cfg: dict[str, Any]) -> dict[str, Any]:
    """Settings that hold for the whole process once the configuration is read: the zone of
    printed times (`[ui] timezone`, see timefmt)."""
    ui = cfg["ui"]
    if not isinstance(ui, dict):
        raise ConfigError("ui: expected a table ([ui])")
    name = ui["timezone"]
    if not isinstance(name, str):
        raise ConfigError(f"[ui] timezone: expected a string, got {name!r}")
    try:
        timefmt.set_zone(name)
    except ValueError as exc:
        raise ConfigError(f"[ui] timezone: {exc}") from None
    return cfg
