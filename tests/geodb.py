"""Build small MaxMind-format databases for tests (no download, no network).

They have the layout of MaxMind's GeoLite2 files, which DB-IP's lite files share: an IPv6 tree
with IPv4 under ``::/96``, 32-bit integers, a ``GeoLite2-Country`` file whose records are
``{"country": {"iso_code": "DE", "names": {"en": ...}}, "continent": …,
"registered_country": …}`` and a ``GeoLite2-ASN`` file whose records are
``{"autonomous_system_number": 3320, "autonomous_system_organization": "..."}``.
Written with the ``mmdb-writer`` package (a test dependency) and read back by ``maxminddb``,
the reader relayguard uses.

    country_db, asn_db = build_geo_dbs(tmp_path)               # the SAMPLE networks
    country_db, asn_db = build_geo_dbs(tmp_path, {"46.48.0.0/16": ("RU", 12389, "Rostelecom")})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

#: network -> (country, ASN, organisation); None leaves the field out of that network's records.
SAMPLE: dict[str, tuple[str | None, int | None, str | None]] = {
    "46.48.0.0/16": ("RU", 12389, "Rostelecom"),
    "81.2.69.0/24": ("GB", 20712, "Andrews & Arnold Ltd"),
    "89.160.20.0/22": ("SE", 29518, "Bredband2 AB"),
    "89.160.20.128/25": ("SE", 29518, "Bredband2 AB"),  # a subnet inside a bigger one
    "2.125.160.0/19": ("GB", 6871, "Plusnet"),
    "216.160.83.0/24": ("US", 209, "CenturyLink"),
    "202.196.224.0/20": ("PH", None, None),  # a country, no ASN data
    "1.128.0.0/11": (None, 1221, "Telstra Pty Ltd"),  # an ASN, no country data
    "198.51.100.0/24": ("NL", 64501, "Documentation Range BV"),  # a test-only range
    "2001:db8::/32": ("DE", 64502, "IPv6 Example GmbH"),
    "2a02:8100::/26": ("DE", 3209, "Vodafone GmbH"),
}

_COUNTRY_NAMES = {"RU": "Russia", "GB": "United Kingdom", "SE": "Sweden", "US": "United States",
                  "PH": "Philippines", "NL": "Netherlands", "DE": "Germany"}
_CONTINENTS = {"RU": "EU", "GB": "EU", "SE": "EU", "US": "NA", "PH": "AS", "NL": "EU", "DE": "EU"}


def _writer(database_type: str) -> MMDBWriter:
    return MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type,
                      languages=["en"], description=f"relayguard test {database_type}",
                      int_type="u32")


def write_country_db(path: Path, networks: Mapping[str, str]) -> Path:
    """A GeoLite2-Country-style file: network -> ISO country code."""
    w = _writer("GeoLite2-Country")
    for net, cc in networks.items():
        country = {"iso_code": cc, "names": {"en": _COUNTRY_NAMES.get(cc, cc)},
                   "geoname_id": 1000 + sum(map(ord, cc))}
        w.insert_network(IPSet([net]), {
            "continent": {"code": _CONTINENTS.get(cc, "EU")},
            "country": country,
            "registered_country": country,
        })
    w.to_db_file(str(path))
    return path


def write_asn_db(path: Path, networks: Mapping[str, tuple[int, str]]) -> Path:
    """A GeoLite2-ASN-style file: network -> (ASN, organisation)."""
    w = _writer("GeoLite2-ASN")
    for net, (asn, org) in networks.items():
        w.insert_network(IPSet([net]), {"autonomous_system_number": asn,
                                        "autonomous_system_organization": org})
    w.to_db_file(str(path))
    return path


def build_geo_dbs(directory: Path,
                  networks: Mapping[str, tuple[str | None, int | None, str | None]] = SAMPLE
                  ) -> tuple[Path, Path]:
    """Write ``GeoLite2-Country.mmdb`` and ``GeoLite2-ASN.mmdb`` into ``directory``.

    Returns their paths, for ``[geo] country_db`` and ``asn_db``. More specific networks
    win over the networks they are inside, whatever the order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    # Wider networks first: the writer lets a later, narrower insert split an earlier one.
    order = sorted(networks, key=lambda n: IPSet([n]).iter_cidrs()[0].prefixlen)
    countries = {n: networks[n][0] for n in order if networks[n][0]}
    asns = {n: (networks[n][1], networks[n][2] or "") for n in order if networks[n][1] is not None}
    return (write_country_db(directory / "GeoLite2-Country.mmdb", countries),  # type: ignore[arg-type]
            write_asn_db(directory / "GeoLite2-ASN.mmdb", asns))  # type: ignore[arg-type]
