"""Password policy for the "change the user's password" step.

A stolen SASL account is the seeds' most frequent cause, usually by brute force, so the new
password must survive exactly that: long, not a common password, not derived from the login.
The estimate comes from ``zxcvbn`` (dictionary, keyboard-pattern, date and l33t matching); a
small bundled list of the passwords brute-force bots try first is checked as well, so the
answer names the reason in plain words.

The password is only ever handled in memory: it is never logged, printed or put in a result.
"""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass, field
from typing import Any

#: What SMTP/IMAP brute-force bots try first (from the seeds' incidents and public honeypot
#: reports); zxcvbn knows many more, this list makes the reason explicit.
COMMON = frozenset("""
123456 123456789 12345678 1234567890 12345 1234567 111111 000000 123123 654321 666666
121212 112233 password password1 password123 passw0rd p@ssw0rd p@ssword qwerty qwerty123
qwertz azerty abc123 abcd1234 1q2w3e4r 1q2w3e 1qaz2wsx zaq12wsx qazwsx iloveyou welcome
welcome1 welcome123 admin admin123 administrator root toor test test123 test1234 guest
letmein monkey dragon master sunshine princess football baseball shadow superman
changeme default secret secret123 mail mail123 email email123 postmaster webmaster info
info123 support user user123 demo office office123 company summer2024 winter2024 spring2024
autumn2024 summer2025 winter2025 spring2025 autumn2025 hello hello123 trustno1 starwars
whatever freedom ninja mustang access access123 login login123 pass pass123 pass1234
""".split())

DEFAULT_MIN_LENGTH = 12
DEFAULT_MIN_CLASSES = 3
DEFAULT_MIN_SCORE = 3  # zxcvbn 0-4: 3 = "safely unguessable: moderate protection from offline attack"
PASSPHRASE_LENGTH = 20  # long enough that character variety no longer matters
ZXCVBN_MAX = 100  # zxcvbn's matching is quadratic; the first 100 characters tell enough


@dataclass
class PasswordVerdict:
    ok: bool
    length: int
    classes: int
    score: int | None  # zxcvbn 0-4 (None when zxcvbn is unavailable)
    reasons: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    estimator: str = "zxcvbn"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _classes(password: str) -> int:
    kinds = [str.islower, str.isupper, str.isdigit]
    n = sum(1 for k in kinds if any(k(c) for c in password))
    return n + (1 if any(not c.isalnum() for c in password) else 0)


def _unleet(text: str) -> str:
    return text.lower().translate(str.maketrans("013457@$!", "oleastasi"))


def _user_parts(user: str) -> list[str]:
    """The login and its pieces worth not finding in a password (``john.smith@example.com``:
    john.smith, john, smith, example)."""
    user = user.strip().lower()
    local, _, domain = user.partition("@")
    parts = {user, local}
    parts.update(p for p in re.split(r"[._\-+]", local) if len(p) >= 3)
    labels = domain.split(".")[:-1] if "." in domain else [domain]
    parts.update(p for p in labels if len(p) >= 4)
    return sorted((p for p in parts if len(p) >= 3), key=len, reverse=True)


def check_password(password: str, user: str | None = None, *,
                   min_length: int = DEFAULT_MIN_LENGTH, min_classes: int = DEFAULT_MIN_CLASSES,
                   min_score: int = DEFAULT_MIN_SCORE) -> PasswordVerdict:
    """Judge ``password`` (for ``user``): ``ok`` and the reasons it is not."""
    length = len(password)
    classes = _classes(password)
    reasons: list[str] = []
    suggestions: list[str] = []
    if length < min_length:
        reasons.append(f"too short: {length} characters, at least {min_length} required")
    if classes < min_classes and length < PASSPHRASE_LENGTH:
        reasons.append(f"too little variety: {classes} of 4 character kinds (lower case, upper "
                       f"case, digits, symbols); use {min_classes}, or a passphrase of "
                       f"{PASSPHRASE_LENGTH}+ characters")
    low = password.lower()
    plain = _unleet(password)
    stripped = plain.strip(string.digits + string.punctuation + " ")
    if low in COMMON or plain in COMMON or stripped in COMMON:
        reasons.append("one of the most common passwords: brute-force bots try it first")
    if user:
        for part in _user_parts(user):
            if part in low or part in plain:
                what = "the login" if part in (user.lower(), user.lower().partition("@")[0]) \
                    else f"part of the login ({part!r})"
                reasons.append(f"contains {what}: attackers try login-based passwords first")
                break
    if length and len(set(password)) < 5:
        reasons.append("too repetitive: a few characters repeated")
    score: int | None = None
    estimator = "zxcvbn"
    try:
        from zxcvbn import zxcvbn
    except ImportError:  # the bundled list still applies
        estimator = "bundled list"
    else:
        inputs = _user_parts(user) if user else []
        est = zxcvbn(password[:ZXCVBN_MAX], user_inputs=inputs)
        score = int(est["score"])
        feedback = est.get("feedback") or {}
        if score < min_score:
            warning = feedback.get("warning") or "easy to guess"
            reasons.append(f"guessable (strength {score}/4, {min_score} required): "
                           f"{warning.rstrip('.')}")
        suggestions = [s for s in feedback.get("suggestions") or [] if s]
    if reasons and not suggestions:
        suggestions = ["Use a passphrase of four or more unrelated words, or a password manager's "
                       "random password."]
    return PasswordVerdict(not reasons, length, classes, score, reasons, suggestions, estimator)
