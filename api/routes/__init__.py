"""Every blueprint of the API, registered on the app in one place."""
from flask import Flask


def register(app: Flask) -> None:
    from api.routes import access, approvals, domains, events, inboxes, messages, reference, tokens, wellknown

    for module in (access, domains, inboxes, tokens, messages, events, approvals, reference, wellknown):
        app.register_blueprint(module.bp)
