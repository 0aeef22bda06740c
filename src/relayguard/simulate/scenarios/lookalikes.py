"""Episodes every run has, whatever its size: the benign look-alikes a detector must not flag
(a user mistyping her password, SASL back-end outages, LAN PCs with a little port-25 traffic,
a 40-recipient invitation), the Postfix upgrade, and the deliberately malformed lines."""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter

from .. import data as D
from ..pacing import Episode
from ..world import World
from ..writers import Writer


def items(w: World) -> list[tuple[float, str, float]]:
    """(time, kind, arg) of the episodes, in time order."""
    rng = w.rng("fixed")
    r = rng.random
    out = [(w.at(0.30) + r() * 600, "mistype", 2.0),
           (w.at(0.72) + r() * 600, "mistype", 1.0),
           (w.at(0.12) + r() * 600, "outage", 0.0),
           (w.at(0.55) + r() * 600, "outage", 0.0),
           (w.upgrade_at, "upgrade", 0.0),
           (w.at(0.15) + r() * 900, "lan-smtp", 0.0),
           (w.at(0.60) + r() * 900, "lan-smtp", 1.0),
           (w.at(0.50) + r() * 600, "invite", 0.0)]
    for frac, kind in ((0.07, "truncated-header"), (0.21, "nul-bytes"),
                       (0.37, "invalid-utf8"), (0.48, "truncated-body"),
                       (0.66, "repeated"), (0.81, "binary"), (0.93, "text")):
        out.append((w.at(frac) + r() * 60, kind, 0.0))
    out.sort(key=itemgetter(0))
    return out


def stream(w: World, out: Writer) -> Iterator:
    for i, (t, kind, arg) in enumerate(items(w)):
        yield t
        yield _build(w, out, i, t, kind, arg)


def _build(w: World, out: Writer, i: int, t: float, kind: str, arg: float) -> Episode | str:
    # one generator per item: a dry build at planning time gives exactly the real line count
    rng = w.rng(f"fixed:{i}")
    r = rng.random
    ep: Episode = []
    if kind == "mistype":
        # wrong once (or twice), right the next time: a human, not a guesser
        grace = w.user_by_name[D.MISTYPING_USER]
        cname, ip, _ = grace["ips"][-1]
        for _ in range(int(arg)):
            fail = out.auth_fail_session(rng, t, grace["svc"], cname, ip, [grace["login"]],
                                         grace["mech"], tls=True)
            ep += fail
            t = fail[-1][0] + 15 + r() * 40
        rc = [w.ext_person(rng, "gmail.com")]
        ep += out.session(rng, t, grace["svc"], cname, ip,
                          [(grace["addr"], rc, w.user_msgid(rng, 0, t), "user")],
                          auth=(grace["mech"], grace["login"]), dkim=True)
    elif kind == "outage":
        # dovecot auth restarting: several users "fail" at once, a server fault
        ep += out.auth_service_down(t)
        lost = "Connection lost to authentication server"
        for j in range(3 + int(r() * 3)):
            u = w.users[1 + int(r() * (len(w.users) - 1))]
            cname, ip, _ = u["ips"][-1]
            tt = t + 0.5 + j * (2 + r() * 8)
            ep += out.auth_fail_session(rng, tt, u["svc"], cname, ip, [u["login"]], u["mech"],
                                        reason=lost)
            if not out.dry and not any(b["subject"] == ip for b in w.benign):
                w.benign.append({"kind": "auth_bruteforce", "subject": ip,
                                 "what": f"{u['login']}'s login failed in a SASL back-end "
                                         "outage (server fault, not a guess)"})
    elif kind == "upgrade":
        # Debian stable point release: postinst restarts Postfix
        ep += out.postfix_restart(t, "3.7.11")
    elif kind == "lan-smtp":
        # a LAN PC whose mail client talks to its ISP's port 25: a handful, normal
        src = D.NORMAL_LAN_SMTP_PCS[int(arg)]
        dst = w.public_ip(rng)
        tt = t
        for _ in range(4 - int(arg)):
            ep.append((tt, out.fw_line(rng, tt, src, dst, linux=True)))
            tt += 20 + r() * 300
    elif kind == "invite":
        laura = w.user_by_name[D.BIG_INVITE_USER]
        rc = [w.ext_person(rng, D.USER_DESTINATIONS[int(r() * len(D.USER_DESTINATIONS))])
              for _ in range(40)]
        cname, ip, _ = laura["ips"][-1]
        ep += out.session(rng, t, laura["svc"], cname, ip,
                          [(laura["addr"], rc, w.user_msgid(rng, 1, t), "user")],
                          auth=(laura["mech"], laura["login"]), dkim=True)
    else:
        return kind  # a malformed line, made at emission (it needs the line number)
    return ep
