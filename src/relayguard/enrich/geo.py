"""Where an address is: country and network (ASN) from local MaxMind-format databases.

The administrator provides the files (GeoLite2-Country or -City and GeoLite2-ASN from MaxMind,
or DB-IP's "lite" equivalents, or ipinfo's country/ASN files) and names them in the
configuration::

    [geo]
    country_db = "/var/lib/GeoIP/GeoLite2-Country.mmdb"
    asn_db = "/var/lib/GeoIP/GeoLite2-ASN.mmdb"

relayguard never downloads anything: without a configured file every feature works, the findings
just do not say "logins from 9 countries / 14 networks".

    geo = GeoDB.open(cfg)            # None when [geo] names no file; GeoError when a file is bad
    if geo is not None:
        g = geo.lookup("46.48.93.60")   # Geo(country='RU', asn=12345, org='Some ISP')

Either file may carry either kind of data (a City file has the country; ipinfo's
country_asn file has both): every record is read for every field it has, so one file named
twice, or in either setting, works. Lookups are cached (LRU), thread-safe, and never raise:
a private, reserved or malformed address, or one absent from the database, gives an empty
``Geo``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_CACHE_SIZE = 65536
SETTINGS = ("country_db", "asn_db")


class GeoError(Exception):
    """A configured database cannot be used; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Geo:
    """What the databases say about one address; None where they say nothing."""

    country: str | None = None  # ISO 3166-1 alpha-2, upper case ("DE")
    asn: int | None = None  # autonomous system number (3320)
    org: str | None = None  # the AS's organisation ("Deutsche Telekom AG")

    def __bool__(self) -> bool:
        return self.country is not None or self.asn is not None

    def to_dict(self) -> dict[str, Any]:
        return {"country": self.country, "asn": self.asn, "org": self.org}

    def label(self) -> str:
        """For people: ``"DE, AS3320 Deutsche Telekom AG"``; ``""`` when nothing is known."""
        parts = []
        if self.country:
            parts.append(self.country)
        if self.asn is not None:
            parts.append(f"AS{self.asn}" + (f" {self.org}" if self.org else ""))
        elif self.org:
            parts.append(self.org)
        return ", ".join(parts)


EMPTY = Geo()


@dataclass
class GeoSpread:
    """How widely a set of addresses is spread: countries and networks (ASNs), with counts."""

    countries: Counter[str] = field(default_factory=Counter)
    networks: Counter[int] = field(default_factory=Counter)
    orgs: dict[int, str] = field(default_factory=dict)  # ASN -> organisation
    unknown: int = 0  # addresses the databases know nothing about (private ones included)

    def to_dict(self) -> dict[str, Any]:
        return {"countries": dict(self.countries.most_common()),
                "networks": [{"asn": a, "org": self.orgs.get(a), "addresses": n}
                             for a, n in self.networks.most_common()],
                "unknown": self.unknown}


# Never in a geolocation database, and looked up by mistake they could only mislead: the LAN,
# loopback, link-local, carrier-grade NAT, unique-local IPv6, multicast, reserved. Documentation
# ranges (192.0.2.0/24, 2001:db8::/32…) are deliberately *not* here: nothing real lives there, so
# a real database has no answer for them, while a test-built one may use them.
_NOT_ROUTED = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/127", "fc00::/7", "fe80::/10", "ff00::/8"))


def _is_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not any(addr.version == n.version and addr in n for n in _NOT_ROUTED)


def _parse(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):  # Postfix writes [2001:db8::1] sometimes
        text = text[1:-1]
    if text.lower().startswith("ipv6:"):  # …and [IPv6:2001:db8::1] in HELO/addresses
        text = text[5:]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:  # fe80::1%eth0: link-local, never in a database anyway
            return None
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
    return addr


def _extract(record: Any) -> tuple[str | None, int | None, str | None]:
    """(country, asn, org) from one record of any of the known layouts."""
    if not isinstance(record, Mapping):
        return None, None, None
    country: str | None = None
    # MaxMind / DB-IP: {"country": {"iso_code": "DE"}, "registered_country": {...}}; the
    # registered country stands in for anycast and satellite ranges that have no "country".
    for key in ("country", "registered_country"):
        v = record.get(key)
        if isinstance(v, Mapping) and isinstance(v.get("iso_code"), str):
            country = v["iso_code"]
            break
        if key == "country" and isinstance(v, str) and v:  # ipinfo: {"country": "DE"}
            country = v
            break
    if country is None and isinstance(record.get("country_code"), str):
        country = record["country_code"]  # ipinfo's free country file
    asn: int | None = None
    n = record.get("autonomous_system_number")  # MaxMind and DB-IP ASN files
    if isinstance(n, int) and not isinstance(n, bool):
        asn = n
    else:
        n = record.get("asn")  # ipinfo: "AS3320"
        if isinstance(n, int) and not isinstance(n, bool):
            asn = n
        elif isinstance(n, str) and n.upper().removeprefix("AS").isdigit():
            asn = int(n.upper().removeprefix("AS"))
    org = record.get("autonomous_system_organization")
    if not isinstance(org, str):
        org = record.get("as_name") if isinstance(record.get("as_name"), str) else None
    return (country.upper() if country else None), asn, (org or None)


class GeoDB:
    """Open MaxMind-format readers and a cached ``lookup``. Use ``GeoDB.open(cfg)``."""

    def __init__(self, country_db: str | os.PathLike[str] | None = None,
                 asn_db: str | os.PathLike[str] | None = None,
                 cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        """Open the given files (at least one); GeoError with a one-line reason if one is bad."""
        self.country_path = Path(country_db).expanduser() if country_db else None
        self.asn_path = Path(asn_db).expanduser() if asn_db else None
        if self.country_path is None and self.asn_path is None:
            raise GeoError("[geo]: no database file given (country_db or asn_db)")
        self._readers: list[Any] = []
        self.descriptions: dict[str, str] = {}  # setting -> "GeoLite2-Country 2026-06-20"
        opened: dict[Path, Any] = {}
        try:
            for setting, path in (("country_db", self.country_path), ("asn_db", self.asn_path)):
                if path is None:
                    continue
                key = path.resolve()
                if key not in opened:  # one file named twice (ipinfo country_asn) is read once
                    opened[key] = _open_reader(setting, path)
                    self._readers.append(opened[key])
                self.descriptions[setting] = _describe(opened[key])
        except GeoError:
            self.close()
            raise
        self._lookup = lru_cache(maxsize=cache_size)(self._uncached)

    @classmethod
    def open(cls, cfg: Mapping[str, Any] | None) -> GeoDB | None:
        """From the configuration (the whole config, or its ``[geo]`` table).

        None when neither ``country_db`` nor ``asn_db`` is set (enrichment is optional);
        GeoError with one line naming the setting and the file when a configured file is
        missing, unreadable or not a MaxMind DB.
        """
        section: Mapping[str, Any] = {}
        if cfg:
            geo = cfg.get("geo")
            if isinstance(geo, Mapping):
                section = geo
            elif any(k in cfg for k in SETTINGS):
                section = cfg
        country = str(section.get("country_db") or "").strip()
        asn = str(section.get("asn_db") or "").strip()
        if not country and not asn:
            return None
        size = section.get("cache_size", DEFAULT_CACHE_SIZE)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise GeoError(f"[geo] cache_size: expected a number of addresses, not {size!r}")
        return cls(country or None, asn or None, cache_size=size)

    def lookup(self, ip: str) -> Geo:
        """Country, ASN and organisation of ``ip``; an empty Geo when unknown. Never raises."""
        if not isinstance(ip, str):
            return EMPTY
        return self._lookup(ip)

    def _uncached(self, ip: str) -> Geo:
        addr = _parse(ip)
        if addr is None or not _is_public(addr):
            return EMPTY
        country: str | None = None
        asn: int | None = None
        org: str | None = None
        for reader in self._readers:
            try:
                record = reader.get(addr)
            except (ValueError, OSError, RuntimeError):
                # An IPv6 address in an IPv4-only file, a file truncated while open: unknown.
                continue
            c, a, o = _extract(record)
            country = country or c
            if asn is None and a is not None:
                asn, org = a, o
            org = org or o
        if country is None and asn is None and org is None:
            return EMPTY
        return Geo(country, asn, org)

    def spread(self, ips: Iterable[str]) -> GeoSpread:
        """Count distinct addresses per country and per network (for "from 9 countries")."""
        out = GeoSpread()
        # In the order given, not a set's: ties in the counts then rank the same in every run.
        for ip in dict.fromkeys(ips):
            g = self.lookup(ip)
            if not g:
                out.unknown += 1
                continue
            if g.country:
                out.countries[g.country] += 1
            if g.asn is not None:
                out.networks[g.asn] += 1
                if g.org and g.asn not in out.orgs:
                    out.orgs[g.asn] = g.org
        return out

    def cache_info(self) -> Any:
        return self._lookup.cache_info()

    def close(self) -> None:
        for r in self._readers:
            # Closing must never hide the error that made us close.
            with contextlib.suppress(Exception):
                r.close()
        self._readers = []

    def __enter__(self) -> GeoDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GeoDB(country_db={self.country_path!s}, asn_db={self.asn_path!s})"


def _open_reader(setting: str, path: Path) -> Any:
    try:
        import maxminddb
    except ImportError:
        raise GeoError(f"[geo] {setting} is set but the maxminddb library is missing "
                       "(pip install maxminddb)") from None
    if not path.exists():
        raise GeoError(f"[geo] {setting}: {path}: no such file")
    if path.is_dir():
        raise GeoError(f"[geo] {setting}: {path} is a directory, not a .mmdb file")
    try:
        return maxminddb.open_database(str(path))
    except maxminddb.InvalidDatabaseError as exc:
        raise GeoError(f"[geo] {setting}: {path} is not a MaxMind DB file ({exc})") from None
    except PermissionError:
        raise GeoError(f"[geo] {setting}: {path}: permission denied") from None
    except OSError as exc:
        raise GeoError(f"[geo] {setting}: {path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:  # a damaged metadata section
        raise GeoError(f"[geo] {setting}: {path} is not a MaxMind DB file ({exc})") from None


def _describe(reader: Any) -> str:
    try:
        meta = reader.metadata()
        import time

        built = time.strftime("%Y-%m-%d", time.gmtime(int(meta.build_epoch)))
        return f"{meta.database_type} {built}"
    except Exception:  # noqa: BLE001 — a description is a courtesy
        return "MaxMind DB"
