"""Business rules, one function per use case. Each takes an explicit session and settings,
raises typed errors from appliance.errors, and never imports Flask or aiosmtpd. Callers own the
transaction: an edge opens a unit of work, calls one service, and commits."""


def register_handlers() -> None:
    """Connect the services whose actions can be held to approvals; each process calls it once at
    start (the web app, the worker, the command line), so no service imports another to be found."""
    from appliance.services.mail import outbound

    outbound.register_approval_handlers()
    from appliance.services.workspace import calendar

    calendar.register_schedule()  # calendar reminders re-arm at a series' next occurrence
