"""Business rules, one function per use case. Each takes an explicit session and settings,
raises typed errors from appliance.errors, and never imports Flask or aiosmtpd. Callers own the
transaction: an edge opens a unit of work, calls one service, and commits."""
