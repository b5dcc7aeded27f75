"""Well-known documents served to other mail systems (not part of the JSON API)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from api.framework import PUBLIC, Ctx, Reply, endpoint
from appliance.services.domains import mtasts

bp = Blueprint("wellknown", __name__)


@endpoint(bp, "/.well-known/mta-sts.txt", "GET", auth=PUBLIC, tag="well-known", content_type="text/plain",
          summary="The MTA-STS policy of the domain named by the Host header (mta-sts.<domain>)")
def mta_sts_policy(ctx: Ctx) -> Reply:
    text = mtasts.policy_for_host(ctx.db, ctx.settings, request.host)
    return Reply(200, Response(text, mimetype="text/plain", headers={"Cache-Control": "max-age=300"}))
