"""Close the doors: configuration audit, open-relay probe, blocklist self-check, password policy.

* :mod:`.postconf` — the effective Postfix configuration read through the real ``postconf``
  (``-c DIR``, defaults, master.cf services and their ``-o`` overrides).
* :mod:`.restrictions` — what smtpd's restriction lists decide for a given kind of client.
* :mod:`.config` — findings ``{"id", "severity", "title", "detail", "fix"}`` about that
  configuration and, where ``doveconf`` exists, about Dovecot's (:mod:`.dovecot`).
* :mod:`.probe` — an SMTP dialogue up to ``RCPT TO`` (never ``DATA``) that tells whether a server
  relays for a given source address.
* :mod:`.dnsbl` — our outbound addresses against DNS blocklists, with the meaning of each answer.
* :mod:`.password` — a password policy check for the "change the user's password" step.

The commands ``audit``, ``probe-relay``, ``dnsbl``, ``password-check`` are in relayguard/cli/audit.py.
Nothing is imported here on purpose: dnspython or zxcvbn should only be loaded by the commands
that use them.
"""
