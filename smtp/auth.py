"""The listener's authentication step: SPF, DKIM and DMARC through appliance.services.mail.mailauth."""
from __future__ import annotations

import logging

from appliance.config import Settings
from appliance.dns import CachingResolver
from appliance.services.mail.mailauth import authenticate_message
from smtp.handler import AuthenticationOutcome, Delivery

log = logging.getLogger("gentbox.smtp")


def make_authenticator(settings: Settings):  # noqa: ANN201
    """A hook for Listener(authenticate=…): checks each delivery with the configured resolver and
    records the results, the header naming this host as the authentication service."""
    resolver = CachingResolver(settings)  # per process: SPF/DKIM/DMARC answers kept for their TTL

    def authenticate(delivery: Delivery) -> AuthenticationOutcome:
        try:
            result = authenticate_message(delivery.raw, client_ip=delivery.client_ip, helo=delivery.helo,
                                          mail_from=delivery.mail_from, resolver=resolver,
                                          authserv_id=settings.hostname)
        except ValueError:  # not an IP peer (a UNIX socket in tests): nothing to check SPF against
            log.warning("no SPF/DKIM/DMARC check for a peer without an IP address")
            return AuthenticationOutcome(results={})
        return AuthenticationOutcome(results=result.to_dict(), header=result.header())

    return authenticate
