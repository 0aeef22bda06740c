"""Mail from the internet: deliveries, rejects, scanners, stray AUTH guesses."""

from __future__ import annotations

from collections.abc import Iterator
from random import Random

from .. import data as D
from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer


def stream(w: World, out: Writer, budget: int) -> Iterator:
    rng = w.rng("inbound")
    r = rng.random
    pacer = Pacer(w, rng, budget, w.t_begin, w.t_end, 6, diurnal=0.5)
    locals_ = w.local_names

    def build(t: float) -> Episode:
        k = r()
        if k < 0.52:
            cname, ip, sender = _client(w, rng)
            dom = sender.rpartition("@")[2]
            nr = 1 if r() < 0.85 else 2
            rcpts = [f"{locals_[int(r() * len(locals_))]}@{D.DOMAIN}" for _ in range(nr)]
            if dom == "gmail.com":
                mid = f"CA+{rng.getrandbits(180):045x}@mail.gmail.com"
            elif dom == "outlook.com":
                mid = f"AM0PR04MB{rng.getrandbits(40):010X}@AM0PR04MB1234.eurprd04.prod.outlook.com"
            else:
                mid = f"{rng.getrandbits(64):016x}.{rng.getrandbits(20)}@{dom}"
            return out.session(rng, t, "smtpd", cname, ip, [(sender, rcpts, mid, "user")],
                               tls=r() < 0.8)
        if k < 0.80:
            return out.reject_session(rng, t)
        if k < 0.94:
            return out.scanner_session(rng, t)
        # an internet-wide scanner's one or two guesses: below any sane threshold
        ip = w.public_ip(rng)
        guesses = [D.GUESS_NAMES[int(r() * len(D.GUESS_NAMES))] for _ in range(1 + (r() < 0.3))]
        return out.auth_fail_session(rng, t, "smtpd" if r() < 0.6 else "submission/smtpd",
                                     "unknown", ip, guesses)

    return paced(pacer, build)


def _client(w: World, rng: Random) -> tuple[str, str, str]:
    """(client name, IP, envelope sender) of a remote MTA delivering to us."""
    r = rng.random
    name_t, ip_t, kind = D.INBOUND_MTAS[int(r() * len(D.INBOUND_MTAS))]
    a = 2 + int(r() * 250)
    b = 10 + int(r() * 200)
    if kind == "partner":
        p = D.PARTNERS[int(r() * len(D.PARTNERS))]
        return f"smtp-out.{p}", w.dom_info(p)[1], w.ext_person(rng, p)
    x = f"db{3 + int(r() * 6)}eur0{1 + int(r() * 5)}on{2000 + int(r() * 999)}"
    if kind == "mailchimp":
        sender = (f"bounce-mc.us{1 + int(r() * 20)}_{rng.getrandbits(30)}."
                  f"{rng.getrandbits(20)}-{rng.getrandbits(40):x}@mail{b}.mcsv.net")
    elif kind == "amazonses":
        sender = f"0102019{rng.getrandbits(60):015x}-000000@amazonses.com"
    else:
        sender = w.ext_person(rng, kind)
    return name_t.format(a=a, b=b, x=x), ip_t.format(a=a, b=b), sender
