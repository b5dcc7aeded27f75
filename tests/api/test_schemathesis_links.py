"""Issue 24: the OpenAPI document links each create to the get, update and delete of what it made,
and schemathesis' stateful run follows those links against the app (WSGI, in-process) with an
agent token holding every scope: no server error, no answer outside the document."""
from __future__ import annotations

import hypothesis
import schemathesis
from hypothesis import HealthCheck

from appliance.services.identity.auth import SCOPES

# Auth is the other schemathesis test's subject (per operation, both token kinds); here the token
# is the run's own, so its "ignored auth" probe (which takes the header for a generated one) is off.
CONFIG = {"seed": 20240601, "generation": {"database": "none"},
          "checks": {"positive_data_acceptance": {"enabled": False}, "ignored_auth": {"enabled": False}}}


def test_creates_link_to_get_update_and_delete(client):
    doc = client.get("/v1/openapi.json").get_json()
    for collection, item, param in (("/v1/labels/", "/v1/labels/{label_id}/", "label_id"),
                                    ("/v1/tasks/", "/v1/tasks/{task_id}/", "task_id"),
                                    ("/v1/contacts/", "/v1/contacts/{contact_id}/", "contact_id")):
        links = doc["paths"][collection]["post"]["responses"]["201"]["links"]
        targets = {link["operationId"]: link["parameters"] for link in links.values()}
        for method in ("get", "delete"):
            assert targets[doc["paths"][item][method]["operationId"]] == {param: f"$response.body#/{param}"}
    # A link names only a field the answer has: a domain's answer carries `domain`, not the path's `name`.
    assert "links" not in doc["paths"]["/v1/domains/"]["post"]["responses"]["201"]


def test_stateful_create_get_delete_over_the_links(app, world):
    owner = world.owner()
    agent = world.agent(owner, world.inbox(owner), list(SCOPES))
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG))
    schema = schema.include(path_regex=r"^/v1/(labels|tasks|contacts)/")

    seen: set[tuple[str, str, int]] = set()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case):  # noqa: ANN001, ANN202
            return {"headers": agent.auth}

        def after_call(self, response, case):  # noqa: ANN001, ANN202
            seen.add((case.method, case.path, response.status_code))

    Machine.run(settings=hypothesis.settings(max_examples=40, stateful_step_count=8, deadline=None, derandomize=True,
                                             database=None, suppress_health_check=list(HealthCheck),
                                             phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate]))
    # Only a followed link can name an id that exists: a random one is a 404.
    followed = {(method, path) for method, path, status in seen if "{" in path and status in (200, 204)}
    assert followed, [s for s in sorted(seen) if s[2] < 300]
