"""Every blueprint of the API, registered on the app in one place."""
from flask import Flask


def register(app: Flask) -> None:
    from api.routes import reference
    from api.routes.automation import alerts, catalogue, events
    from api.routes.domains import domains, wellknown
    from api.routes.governance import approvals
    from api.routes.governance import usage as usage_routes
    from api.routes.identity import access, inboxes, tokens
    from api.routes.mail import messages

    for module in (access, domains, inboxes, tokens, messages, events, approvals, reference, wellknown):
        app.register_blueprint(module.bp)
    for module in (alerts, catalogue):  # issue 15
        app.register_blueprint(module.bp)
    app.register_blueprint(usage_routes.bp)  # issue 22
