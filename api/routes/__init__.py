"""Every blueprint of the API, registered on the app in one place."""
from flask import Flask


def register(app: Flask) -> None:
    from api.routes import reference
    from api.routes.automation import alerts, catalogue, events
    from api.routes.domains import domains, wellknown
    from api.routes.governance import approvals, audit
    from api.routes.governance import usage as usage_routes
    from api.routes.identity import access, inboxes, tokens
    from api.routes.mail import labels, messages
    from api.routes.team import templates, threads
    from api.routes.workspace import contacts

    for module in (access, domains, inboxes, tokens, messages, events, approvals, reference, wellknown):
        app.register_blueprint(module.bp)
    for module in (alerts, catalogue):  # issue 15
        app.register_blueprint(module.bp)
    app.register_blueprint(audit.bp)  # issue 23
    from api.routes.identity import settings  # issue 27
    app.register_blueprint(settings.bp)
    from api.routes.team import lists as distribution_lists  # issue 16.5
    app.register_blueprint(distribution_lists.bp)
    from api.routes.workspace import tasks as workspace_tasks  # issue 18
    app.register_blueprint(workspace_tasks.bp)
    for module in (labels, templates, threads):  # issue 16
        app.register_blueprint(module.bp)
    app.register_blueprint(contacts.bp)  # issue 17
    from api.routes.workspace import calendar  # issue 18
    app.register_blueprint(calendar.bp)
    app.register_blueprint(usage_routes.bp)  # issue 22
    from api.routes.mail import broadcast  # issue 16.2
    app.register_blueprint(broadcast.bp)
    from api.routes.identity import app_passwords  # issue 25.2
    app.register_blueprint(app_passwords.bp)
    from api.routes.mail import imports  # issue 25.4
    app.register_blueprint(imports.bp)
    from api.routes.governance import compliance  # issue 23 (points 4-7)
    app.register_blueprint(compliance.bp)
    from api.routes.intelligence import digests  # issue 21: digests and phishing marks
    app.register_blueprint(digests.bp)
    from api.routes.automation import sequences  # issue 20.5
    from api.routes.mail import sender_rules  # issue 20.3, 20.4
    app.register_blueprint(sender_rules.bp)
    app.register_blueprint(sequences.bp)
    from api.routes.workspace import files  # issue 19
    app.register_blueprint(files.bp)
    from api.routes.automation import workflows  # issue 20
    app.register_blueprint(workflows.bp)
    from api.routes.intelligence import activity as intelligence_activity, enrichment  # issue 21
    for module in (intelligence_activity, enrichment):
        app.register_blueprint(module.bp)
