"""Guess admin's password from one IP, then spam through the account from a botnet."""

from __future__ import annotations

from collections.abc import Iterator

from .. import data as D
from ..pacing import Episode, Pacer, paced
from ..world import World
from ..writers import Writer

NAME = "compromised-account"
FILLS_QUEUE = True  # spam deferrals stay queued


def plan(w: World) -> list[dict]:
    return [{"kind": "compromised_account", "subject": D.ADMIN, "guessed_from": w.guesser_ip},
            {"kind": "auth_bruteforce", "subject": w.guesser_ip,
             "note": "the guesser that then logged in as admin"}]


def budget(lines: int) -> int:
    return max(520, int(0.07 * lines))  # a floor, so that the attack shows in small files


def streams(w: World, out: Writer, budget: int, culprits: list[dict]) -> list[Iterator]:
    return [_stream(w, out, budget, culprits)]


def _stream(w: World, out: Writer, budget: int, culprits: list[dict]) -> Iterator:
    rng = w.rng("compromised")
    r = rng.random
    used = 0
    ip = w.guesser_ip
    admin = w.user_by_name[D.ADMIN]
    # 1. the guessing: other names first, then admin, one or two tries per connection
    t = w.at(0.40)
    names = [D.GUESS_NAMES[int(r() * len(D.GUESS_NAMES))] for _ in range(14 + int(r() * 8))]
    names += [D.ADMIN] * (8 + int(r() * 6))
    i = 0
    while i < len(names):
        k = 1 + (r() < 0.5)
        chunk = names[i:i + k]
        i += k
        yield t
        ep = out.auth_fail_session(rng, t, "smtpd", "unknown", ip, chunk)
        used += len(ep)
        yield ep
        t = ep[-1][0] + 5 + r() * 60
    # 2. the password is right: a test message to the attacker's drop box
    t += 30 + r() * 120
    t_success = t
    yield t
    ep = out.session(rng, t, "smtpd", "unknown", ip,
                     [(f"{D.ADMIN}@{D.DOMAIN}", [f"check{rng.getrandbits(20)}@mail.ru"], None,
                       "spam")],
                     auth=("LOGIN", D.ADMIN), tls=False)
    used += len(ep)
    yield ep
    # 3. the run: bots join one by one, sessions of several messages each
    n_ips = max(15, min(40, (budget - used) // 60))
    ips = w.botnet[:n_ips]
    t_a = max(t + 600, w.at(0.47))
    t_b = w.at(0.62)
    pacer = Pacer(w, rng, max(1, budget - used), t_a, t_b, 25)
    seen = {ip}
    stats = {"messages": 1, "last": t_a}
    big = budget - used > 2000

    def build(t: float) -> Episode:
        frac = (t - t_a) / (t_b - t_a)
        avail = max(1, min(n_ips, int(n_ips * (0.3 + frac * 1.5))))
        bip = ips[int(r() * r() * avail)] if r() < 0.5 else ips[int(r() * avail)]
        if pacer.used > pacer.budget * 0.5:
            # make sure every bot shows up before the run ends
            bip = next((x for x in ips if x not in seen), bip)
        msgs = []
        # small files: one short message per connection, so that 15+ bots still fit
        for _ in range(1 + int(r() * 3) if big else 1):
            if r() < 0.25:
                sender = f"{D.GUESS_NAMES[int(r() * 8)]}@{D.DOMAIN}"
            else:
                sender = w.ext_person(rng, w.rand_domain(rng))
            rcpts = []
            for _ in range(1 + int(r() * r() * 8) if big else 1 + (r() < 0.3)):
                dom = w.rand_domain(rng) if r() < 0.6 else D.USER_DESTINATIONS[int(r() * 11)]
                rcpts.append(w.ext_person(rng, dom))
            mid = None if r() < 0.3 else f"{rng.getrandbits(64):016x}@{sender.rpartition('@')[2]}"
            msgs.append((sender, rcpts, mid, "spam"))
        svc = "submission/smtpd" if r() < 0.6 else "smtpd"
        stats["pending"] = (bip, len(msgs))
        return out.session(rng, t, svc, "unknown", bip, msgs, auth=("LOGIN", D.ADMIN),
                           tls=svc != "smtpd")

    def kept(ep: Episode) -> None:
        bip, n = stats["pending"]
        seen.add(bip)
        stats["messages"] += n
        stats["last"] = ep[0][0]

    yield from paced(pacer, build, kept)
    account, guesser = culprits
    account.update({"login_ips": len(seen), "messages": stats["messages"],
                    "guess_failures": len(names), "password_guessed_at": w.iso(t_success),
                    "burst": [w.iso(t_a), w.iso(stats["last"])],
                    "normal": {"messages_per_day": admin["rate"], "ips": [admin["ips"][0][1]]}})
    account["bot_ips"] = sorted(seen - {ip})
    guesser["failures"] = len(names)
