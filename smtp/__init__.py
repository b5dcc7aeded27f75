"""The SMTP listener (issue 4): inbound mail on port 25, run by `gentbox smtp` and `gentbox run`.

- server.py: the session protocol (aiosmtpd's SMTP, tightened: bare CR/LF, enhanced status
  codes, source routes, per-IP limits, timeouts) and the Listener that serves it.
- handler.py: the aiosmtpd hooks: RCPT asks appliance.services.mail.inbound.check_recipient, DATA
  stores through inbound.receive and answers 250 only after the commit.
- tls.py: the STARTTLS context and the self-signed pair `gentbox init` makes.

It calls appliance.services, never the other way round (tests/unit/test_layering.py keeps
appliance/ free of aiosmtpd).
"""
