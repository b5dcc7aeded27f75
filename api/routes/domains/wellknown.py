"""Well-known documents served to other mail systems (not part of the JSON API)."""
from __future__ import annotations

from flask import Blueprint, Response, request
from pydantic import Field

from api.framework import PUBLIC, Ctx, Reply, StrictModel, endpoint
from appliance.errors import ValidationError
from appliance.services.domains import mtasts
from appliance.services.mail import client_setup

bp = Blueprint("wellknown", __name__)


@endpoint(bp, "/.well-known/mta-sts.txt", "GET", auth=PUBLIC, tag="well-known", content_type="text/plain",
          summary="The MTA-STS policy of the domain named by the Host header (mta-sts.<domain>)")
def mta_sts_policy(ctx: Ctx) -> Reply:
    text = mtasts.policy_for_host(ctx.db, ctx.settings, request.host)
    return Reply(200, Response(text, mimetype="text/plain", headers={"Cache-Control": "max-age=300"}))


XML = "application/xml"


class AutoconfigQuery(StrictModel):
    emailaddress: str | None = Field(None, max_length=320)


@endpoint(bp, "/.well-known/autoconfig/mail/config-v1.1.xml", "GET", auth=PUBLIC, tag="well-known",
          query=AutoconfigQuery, content_type=XML, summary="Thunderbird's autoconfig: this appliance's IMAP and submission servers "
                                    "(?emailaddress= fills the domain)")
def mail_autoconfig(ctx: Ctx) -> Reply:
    text = client_setup.autoconfig(ctx.settings, ctx.query.emailaddress)
    return Reply(200, Response(text, mimetype=XML, headers={"Cache-Control": "max-age=3600"}))


@endpoint(bp, "/autodiscover/autodiscover.xml", "POST", auth=PUBLIC, tag="well-known", content_type=XML,
          accepts="text/xml", summary="Microsoft's autodiscover (Outlook): the IMAP and submission servers for the "
                                      "EMailAddress of the request")
def mail_autodiscover(ctx: Ctx) -> Reply:
    if not ctx.body:  # Outlook always posts its request; an empty one is a client's mistake
        raise ValidationError("Send Outlook's autodiscover request XML (with EMailAddress) as the body.",
                              fix="POST the autodiscover request document, Content-Type text/xml.")
    text = client_setup.autodiscover(ctx.settings, client_setup.requested_address(ctx.body))
    return Reply(200, Response(text, mimetype=XML))
