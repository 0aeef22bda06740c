"""Fixed vocabulary of the simulated site: its users, peers, remote MTAs and reply texts.

Everything here is constant so that a seed alone decides the output.
"""

from __future__ import annotations

DOMAIN = "example.org"
MYHOSTNAME = "mail.example.org"
PUBLIC_IP = "203.0.113.10"  # the server's own address, the one blocklists name
LAN_IP = "192.168.1.2"  # the server's LAN side (dovecot's lip= for LAN clients)
TRUSTED = ["192.168.0.0/16", "127.0.0.0/8"]

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# The attack targets: fixed names so that labels and docs can cite them.
ADMIN = "admin"
RELAY_HOST = ("gateway", "192.168.122.111")
NEWSLETTER_HOST = ("newsletter", "192.168.1.20")
MONITOR_HOST = ("nagios", "192.168.1.30")
DIRECT_SMTP_PC = "192.168.1.50"
NORMAL_LAN_SMTP_PCS = ("192.168.1.61", "192.168.1.72")
OFFICE_NAT = "198.51.100.23"  # several users' office, one public address

# Ordinary users (admin is added separately). A login is either the bare name or the address;
# both forms exist on real servers (Dovecot `auth_username_format`, virtual users).
USER_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "karl", "laura", "mike", "nina", "oscar", "paula", "quentin", "rita", "sam", "tina",
    "ulrich", "vera", "walter", "xenia", "yann", "zoe", "sales", "office", "jobs",
)
ADDRESS_LOGINS = frozenset(
    ("bob", "dave", "frank", "heidi", "judy", "laura", "nina", "paula", "rita", "tina",
     "vera", "xenia", "zoe", "sales", "jobs")
)
BUSY_USER = "sales"  # a legitimately busy sender (~40 messages a day): must stay below high
MOVING_USER = "dave"  # phone + laptop, switching all day
MISTYPING_USER = "grace"  # gets her password wrong once or twice, then succeeds
BIG_INVITE_USER = "laura"  # one message with 40 recipients (a party invitation)
DISTRIBUTED_TARGET = "carol"  # the slow, many-IP guessing target

# Login names tried by password guessers (followed by real names harvested from the web).
GUESS_NAMES = (
    "info", "test", "support", "contact", "webmaster", "postmaster", "office", "mail",
    "marketing", "hr", "accounting", "noreply", "backup", "scanner", "printer", "user",
    "guest", "root", "ftp", "billing", "newsletter", "service", "team", "demo", "web",
    "abuse", "security", "database", "oracle", "mysql", "www", "server", "reception",
)

FIRST = (
    "james", "mary", "john", "linda", "peter", "anna", "paul", "sara", "mark", "julia",
    "thomas", "laura", "david", "emma", "martin", "sophie", "lucas", "chloe", "marco", "elena",
    "jan", "eva", "pierre", "marie", "hans", "ingrid", "kenji", "yuki", "raj", "priya",
)
LAST = (
    "smith", "jones", "brown", "miller", "davis", "garcia", "wilson", "taylor", "moore",
    "martin", "muller", "schmidt", "dubois", "bernard", "rossi", "russo", "jansen", "nowak",
    "silva", "santos", "tanaka", "sato", "kumar", "singh", "olsen", "berg", "novak", "horvat",
)

# Words for random recipient and forged sender domains of spam runs.
WORDS = (
    "alpha", "blue", "cloud", "delta", "eagle", "fast", "green", "home", "iron", "jet",
    "king", "lake", "metro", "north", "ocean", "prime", "quick", "red", "star", "tech",
    "union", "vista", "west", "xpress", "young", "zen", "apex", "bright", "cedar", "dream",
    "echo", "fox", "gold", "hill", "ice", "jade", "key", "lion", "mint", "nova", "oak",
    "pixel", "quest", "river", "solar", "tiger", "ultra", "vector", "wave", "yard", "zone",
    "shop", "mail", "net", "web", "data", "media", "group", "trade", "works", "line",
)
TLDS = ("com", "com", "com", "net", "org", "de", "fr", "it", "es", "nl", "pl", "ru", "br",
        "co.uk", "info", "biz", "us", "ca", "com.au", "jp", "in", "cz", "ro", "hu", "se")

# Big providers: domain -> (MX host, IP prefix, reply style, blocklist it consults).
# The blocklist column only matters once the server is listed (scenario `blocklisted`).
PROVIDERS: dict[str, tuple[str, str, str, str | None]] = {
    "gmail.com": ("gmail-smtp-in.l.google.com", "142.250.102.", "google", None),
    "googlemail.com": ("gmail-smtp-in.l.google.com", "142.250.102.", "google", None),
    "outlook.com": ("outlook-com.olc.protection.outlook.com", "52.101.68.", "outlook", None),
    "hotmail.com": ("hotmail-com.olc.protection.outlook.com", "52.101.73.", "outlook", None),
    "live.com": ("live-com.olc.protection.outlook.com", "52.101.41.", "outlook", None),
    "yahoo.com": ("mta5.am0.yahoodns.net", "67.195.204.", "yahoo", None),
    "gmx.de": ("mx00.emig.gmx.net", "212.227.15.", "gmx", None),
    "web.de": ("mx-ha03.web.de", "212.227.17.", "gmx", None),
    "orange.fr": ("smtp-in.orange.fr", "80.12.242.", "orange", "spamcop"),
    "icloud.com": ("mx01.mail.icloud.com", "17.57.154.", "postfix", None),
    "free.fr": ("mx1.free.fr", "212.27.48.", "postfix", "zen"),
    "libero.it": ("smtp-in.libero.it", "213.209.1.", "postfix", "zen"),
    "seznam.cz": ("mx1.seznam.cz", "77.75.78.", "postfix", "zen"),
}
# Partners and customers the users write to; small company servers use public blocklists.
PARTNERS = (
    "acme-industries.com", "mueller-bau.de", "dupont-conseil.fr", "nordicsupply.se",
    "brightlaw.co.uk", "rossi-logistica.it", "vandenberg.nl", "kowalski-print.pl",
    "pacific-traders.com", "alpine-tools.ch", "citycouncil.example.gov", "univ-lyon.example.fr",
    "harbor-freight.example.com", "greenleaf-bio.com", "summit-partners.net", "oakwood-dental.com",
)
# Weighted destinations of ordinary users' mail (providers repeated = more popular).
USER_DESTINATIONS = (
    "gmail.com", "gmail.com", "gmail.com", "gmail.com", "outlook.com", "hotmail.com",
    "yahoo.com", "gmx.de", "web.de", "orange.fr", "icloud.com", "free.fr", "libero.it",
) + PARTNERS + PARTNERS

# Inbound MTAs that deliver to us: (name template, IP template); {a},{b} are filled in.
INBOUND_MTAS = (
    ("mail-wr1-f{a}.google.com", "209.85.221.{a}", "gmail.com"),
    ("mail-ej1-f{a}.google.com", "209.85.218.{a}", "gmail.com"),
    ("mail-{x}.outbound.protection.outlook.com", "40.107.{b}.{a}", "outlook.com"),
    ("sonic{a}-{b}.consmr.mail.ir2.yahoo.com", "77.238.176.{a}", "yahoo.com"),
    ("mout.gmx.net", "212.227.17.{a}", "gmx.de"),
    ("mail{a}.atl{b}.rsgsv.net", "198.2.{b}.{a}", "mailchimp"),
    ("a8-{a}.smtp-out.amazonses.com", "54.240.8.{a}", "amazonses"),
    ("smtp-out.{p}", "{ip}", "partner"),
)

TLS_SERVER = ("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
              "server-signature RSA-PSS (2048 bits) server-digest SHA256")
TLS_CLIENT = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"

# Public first octets for random internet addresses (no private, reserved or multicast space).
PUBLIC_OCTETS = (
    2, 5, 24, 31, 37, 41, 45, 46, 49, 58, 59, 61, 62, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86,
    87, 88, 89, 91, 92, 93, 94, 95, 101, 103, 104, 109, 110, 111, 112, 113, 114, 115, 116, 117,
    118, 119, 121, 122, 123, 124, 125, 141, 151, 154, 156, 175, 176, 177, 178, 179, 180, 181,
    182, 183, 185, 186, 187, 188, 189, 190, 191, 193, 194, 195, 196, 197, 200, 201, 202, 210,
    211, 212, 213, 217, 218, 219, 220, 221, 222,
)

BL_ZEN = "zen.spamhaus.org"
BL_SPAMCOP = "bl.spamcop.net"
