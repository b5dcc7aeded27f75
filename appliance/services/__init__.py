"""Business rules, one function per use case. Each takes an explicit session and settings,
raises typed errors from appliance.errors, and never imports Flask or aiosmtpd. Callers own the
transaction: an edge opens a unit of work, calls one service, and commits."""


def register_handlers() -> None:
    """Connect the services that plug into others: actions that can be held to approvals, and each
    area's pending items to the agenda. Each process calls it once at start (the web app, the
    worker, the command line), so no service imports another to be found."""
    from appliance.services.mail import outbound
    from appliance.services.team import notes
    from appliance.services.workspace import agenda

    outbound.register_approval_handlers()
    agenda.register_pending("team", notes.pending_agenda_items)  # mentions and assignments
