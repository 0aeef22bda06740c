"""Geo enrichment from MaxMind-format databases that the tests build themselves (tests/geodb.py):
lookups of IPv4, IPv6 and mapped addresses, nested networks, files with only a country or only
an ASN, private and malformed addresses, the configuration, clear errors for missing or damaged
files, the cache, and the spread of a set of addresses over countries and networks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from geodb import SAMPLE, build_geo_dbs
from relayguard import config as config_mod
from relayguard.enrich import Geo, GeoDB, GeoError


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_geo_dbs(tmp_path_factory.mktemp("geo"))


@pytest.fixture
def geo(dbs: tuple[Path, Path]) -> GeoDB:
    country, asn = dbs
    g = GeoDB.open({"geo": {"country_db": str(country), "asn_db": str(asn)}})
    assert g is not None
    return g


@pytest.mark.parametrize(("ip", "expected"), [
    ("46.48.93.60", Geo("RU", 12389, "Rostelecom")),  # the seeds' attacker
    ("81.2.69.142", Geo("GB", 20712, "Andrews & Arnold Ltd")),
    ("89.160.20.130", Geo("SE", 29518, "Bredband2 AB")),  # in the /25 inside the /22
    ("89.160.21.1", Geo("SE", 29518, "Bredband2 AB")),  # in the /22 only
    ("202.196.224.5", Geo("PH", None, None)),  # country known, ASN not
    ("1.128.0.1", Geo(None, 1221, "Telstra Pty Ltd")),  # ASN known, country not
    ("198.51.100.23", Geo("NL", 64501, "Documentation Range BV")),  # only in the test file
    ("2001:db8::1", Geo("DE", 64502, "IPv6 Example GmbH")),
    ("2a02:8100:1:2::3", Geo("DE", 3209, "Vodafone GmbH")),
    ("::ffff:46.48.1.1", Geo("RU", 12389, "Rostelecom")),  # IPv4-mapped, as some logs write it
    ("[2a02:8100::5]", Geo("DE", 3209, "Vodafone GmbH")),  # Postfix's [bracketed] IPv6
    ("IPv6:2a02:8100::5", Geo("DE", 3209, "Vodafone GmbH")),
    (" 46.48.93.60 ", Geo("RU", 12389, "Rostelecom")),
])
def test_lookup(geo: GeoDB, ip: str, expected: Geo) -> None:
    assert geo.lookup(ip) == expected


@pytest.mark.parametrize("ip", [
    "10.1.2.3", "192.168.1.50", "172.16.0.1", "127.0.0.1", "100.64.0.1", "169.254.1.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00::1",
    "fe80::1%eth0", "ff02::1",  # private, local, special
    "8.8.8.8", "2a00:1450::1",  # public but absent from the small test files
    "", "unknown", "999.1.1.1", "46.48.93", "1.2.3.4/24", "gateway[192.168.122.111]",
])
def test_unknown_private_and_malformed_addresses_are_empty(geo: GeoDB, ip: str) -> None:
    g = geo.lookup(ip)
    assert g == Geo(None, None, None) and not g and g.label() == ""


def test_non_string_is_empty(geo: GeoDB) -> None:
    assert geo.lookup(None) == Geo()  # type: ignore[arg-type]
    assert geo.lookup(12345) == Geo()  # type: ignore[arg-type]


def test_not_configured_is_none() -> None:
    assert GeoDB.open(None) is None
    assert GeoDB.open({}) is None
    assert GeoDB.open(config_mod.defaults()) is None  # [geo] paths are empty by default
    assert GeoDB.open({"geo": {"country_db": "  ", "asn_db": ""}}) is None


def test_configuration_file(tmp_path: Path, dbs: tuple[Path, Path]) -> None:
    country, asn = dbs
    cfg_file = tmp_path / "relayguard.toml"
    cfg_file.write_text(f'[geo]\ncountry_db = "{country}"\nasn_db = "{asn}"\ncache_size = 10\n')
    cfg = config_mod.load(cfg_file)
    with GeoDB.open(cfg) as g:  # type: ignore[union-attr]
        assert g.lookup("81.2.69.142").country == "GB"
        assert g.cache_info().maxsize == 10
        assert g.descriptions["country_db"].startswith("GeoLite2-Country ")
        assert g.descriptions["asn_db"].startswith("GeoLite2-ASN ")
    cfg_file.write_text('[geo]\ncountry_file = "x"\n')
    with pytest.raises(config_mod.ConfigError, match="geo.country_file"):
        config_mod.load(cfg_file)
    # The [geo] table itself is accepted too.
    assert GeoDB.open({"country_db": str(country)}) is not None


def test_one_database_is_enough(dbs: tuple[Path, Path]) -> None:
    country, asn = dbs
    only_country = GeoDB.open({"geo": {"country_db": str(country)}})
    only_asn = GeoDB.open({"geo": {"asn_db": str(asn)}})
    assert only_country is not None and only_asn is not None
    assert only_country.lookup("46.48.93.60") == Geo("RU", None, None)
    assert only_asn.lookup("46.48.93.60") == Geo(None, 12389, "Rostelecom")


def test_missing_file_is_a_clear_error(tmp_path: Path, dbs: tuple[Path, Path]) -> None:
    missing = tmp_path / "GeoLite2-ASN.mmdb"
    with pytest.raises(GeoError) as exc:
        GeoDB.open({"geo": {"country_db": str(dbs[0]), "asn_db": str(missing)}})
    msg = str(exc.value)
    assert msg == f"[geo] asn_db: {missing}: no such file"
    with pytest.raises(GeoError, match="is a directory"):
        GeoDB.open({"geo": {"country_db": str(tmp_path)}})


@pytest.mark.parametrize("content", [b"", b"not a database\n" * 100, b"\xab\xcd\xefMaxMind.com" + b"\0" * 64])
def test_damaged_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "GeoLite2-Country.mmdb"
    bad.write_bytes(content)
    with pytest.raises(GeoError) as exc:
        GeoDB.open({"geo": {"country_db": str(bad)}})
    msg = str(exc.value)
    assert msg.startswith(f"[geo] country_db: {bad} is not a MaxMind DB file")
    assert "\n" not in msg


def test_truncated_database_is_an_error_or_unknown(tmp_path: Path, dbs: tuple[Path, Path]
                                                    ) -> None:
    """A file cut short (an interrupted copy) must not crash a lookup."""
    data = dbs[0].read_bytes()
    cut = tmp_path / "cut.mmdb"
    cut.write_bytes(data[: len(data) // 2] + data[-200:])  # keeps the metadata marker
    try:
        g = GeoDB.open({"geo": {"country_db": str(cut)}})
    except GeoError as exc:
        assert "country_db" in str(exc)
        return
    assert g is not None
    for ip in ("46.48.93.60", "2001:db8::1", "81.2.69.142"):
        g.lookup(ip)  # any answer, but no exception


def test_lookups_are_cached(geo: GeoDB) -> None:
    before = geo.cache_info()
    for _ in range(3):
        geo.lookup("46.48.93.60")
    after = geo.cache_info()
    assert after.hits - before.hits >= 2 and after.misses - before.misses <= 1


def test_lookups_from_threads(geo: GeoDB) -> None:
    ips = [f"46.48.{i}.{j}" for i in range(20) for j in range(1, 30)] + ["81.2.69.142"] * 50
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(geo.lookup, ips))
    assert {r.country for r in results} == {"RU", "GB"}


def test_spread_counts_distinct_addresses(geo: GeoDB) -> None:
    ips = ["46.48.93.60", "46.48.1.1", "46.48.1.1", "81.2.69.142", "2a02:8100::5",
           "192.168.1.10", "8.8.8.8"]
    s = geo.spread(ips)
    assert s.countries == {"RU": 2, "GB": 1, "DE": 1}
    assert s.networks == {12389: 2, 20712: 1, 3209: 1}
    assert s.unknown == 2
    d = s.to_dict()
    assert d["countries"] == {"RU": 2, "GB": 1, "DE": 1}
    assert d["networks"][0] == {"asn": 12389, "org": "Rostelecom", "addresses": 2}


def test_geo_for_people_and_json() -> None:
    g = Geo("RU", 12389, "Rostelecom")
    assert g.label() == "RU, AS12389 Rostelecom"
    assert g.to_dict() == {"country": "RU", "asn": 12389, "org": "Rostelecom"}
    assert Geo(None, 1221, None).label() == "AS1221" and Geo("PH").label() == "PH"


def test_one_file_with_both_kinds_of_data(tmp_path: Path) -> None:
    """ipinfo's free country_asn file: flat fields, "AS3320" as a string; named in both
    settings, it is opened once."""
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="ipinfo country_asn.mmdb")
    w.insert_network(IPSet(["80.128.0.0/11"]), {"country": "DE", "country_name": "Germany",
                                                 "asn": "AS3320", "as_name": "Deutsche Telekom AG",
                                                 "as_domain": "telekom.de"})
    path = tmp_path / "country_asn.mmdb"
    w.to_db_file(str(path))
    g = GeoDB.open({"geo": {"country_db": str(path), "asn_db": str(path)}})
    assert g is not None and len(g._readers) == 1
    assert g.lookup("80.130.1.2") == Geo("DE", 3320, "Deutsche Telekom AG")


def test_ipv4_only_database_answers_nothing_for_ipv6(tmp_path: Path) -> None:
    w = MMDBWriter(ip_version=4, database_type="DBIP-Country-Lite")
    w.insert_network(IPSet(["46.48.0.0/16"]), {"country": {"iso_code": "RU"}})
    path = tmp_path / "dbip-country-lite.mmdb"
    w.to_db_file(str(path))
    g = GeoDB(country_db=path)
    assert g.lookup("46.48.0.9") == Geo("RU")
    assert g.lookup("2001:db8::1") == Geo()  # the reader refuses IPv6 here: unknown, no error


def test_registered_country_stands_in(tmp_path: Path) -> None:
    path = tmp_path / "c.mmdb"
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    w.insert_network(IPSet(["5.5.0.0/16"]), {"registered_country": {"iso_code": "fr"}})
    w.to_db_file(str(path))
    assert GeoDB(country_db=path).lookup("5.5.5.5") == Geo("FR")


def test_sample_networks_are_all_known(geo: GeoDB) -> None:
    """Every network of the helper's SAMPLE answers as declared (the helper itself works)."""
    import ipaddress

    for net, (cc, asn, org) in SAMPLE.items():
        first = str(next(ipaddress.ip_network(net).hosts()))
        g = geo.lookup(first)
        assert (g.country, g.asn) == (cc, asn), net
        if asn is not None:
            assert g.org == org
