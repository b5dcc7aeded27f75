"""Business rules, one function per use case. Each takes an explicit session and settings,
raises typed errors from appliance.errors, and never imports Flask or aiosmtpd. Callers own the
transaction: an edge opens a unit of work, calls one service, and commits."""


def register_handlers() -> None:
    """Connect the services that plug into others: actions that can be held to approvals, and each
    area's pending items to the agenda. Each process calls it once at start (the web app, the
    worker, the command line), so no service imports another to be found."""
    from appliance.services.mail import outbound
    from appliance.services.team import notes
    from appliance.services.workspace import agenda, contacts

    outbound.register_approval_handlers()
    from appliance.services.mail import broadcast
    broadcast.register_approval_handlers()  # a held broadcast is one approval (issue 16.2)
    for kind in ("mention", "assignment"):  # the agenda names each item by the kind it was registered as
        agenda.register_pending(kind, lambda db, inbox_id, kind=kind: [
            item for item in notes.pending_agenda_items(db, inbox_id) if item["kind"] == kind])
    agenda.register_pending("share", contacts.pending_agenda_items)  # share offers received (issue 17)
    contacts.register_schedule()  # yearly anniversaries re-arm (issue 17)
    from appliance.services.workspace import calendar

    calendar.register_schedule()  # calendar reminders re-arm at a series' next occurrence
    agenda.register_source("event", calendar.agenda_items, scope="calendar:read")  # issue 18
    from appliance.services.governance import retention

    retention.register_schedule()  # the daily retention run re-arms (issue 23)
