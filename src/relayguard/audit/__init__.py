"""Close the doors: config audit, open-relay probe, blocklist self-check, password policy.

* :mod:`.engine` — the config audit: :func:`~.engine.audit_config` runs the checks of
  :mod:`.checks` (one module per family: mynetworks, relay, auth, sender_login, rate_limits,
  submission, hygiene, dovecot) on the effective Postfix configuration
  (:mod:`relayguard.postfix.postconf`, :mod:`relayguard.postfix.restrictions`) and, where
  ``doveconf`` exists, on Dovecot's (:mod:`.dovecot`); each reports
  :class:`~.context.ConfigFinding` objects ``{"id", "severity", "title", "detail", "fix"}``.
* :mod:`.probe` — an SMTP dialogue up to ``RCPT TO`` (never ``DATA``) that tells whether a server
  relays for a given source address.
* :mod:`.dnsbl` — our outbound addresses against DNS blocklists, with the meaning of each answer.
* :mod:`.password` — a password policy check for the "change the user's password" step.
* :mod:`.cli` — the click commands ``audit`` (the config audit), ``probe-relay``, ``dnsbl``,
  ``password-check``.

Nothing is imported here on purpose: ``relayguard.cli`` imports :mod:`.cli` for every command,
and dnspython or zxcvbn should only be loaded by the commands that use them.
"""
