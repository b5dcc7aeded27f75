"""gentbox-client: a small typed client for a Gentbox appliance's /v1/ API (one method, one call)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict
from urllib.parse import quote

import httpx

__all__ = ["GentboxClient", "GentboxError", "Recipient", "Attachment"]


class Recipient(TypedDict, total=False):
    """An address: `email` required, `name` optional."""

    email: str
    name: str


class Attachment(TypedDict, total=False):
    """An inline attachment: `filename`, `content_base64` (standard base64) and `content_type`."""

    filename: str
    content_type: str
    content_base64: str


Json = dict[str, Any]


class GentboxError(Exception):
    """An error answer of the API: its status and the error body's code, message, field and fix."""

    def __init__(self, status: int, code: str, message: str, fix: str | None = None,
                 field: str | None = None, request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (fix: {fix})" if fix else ""))
        self.status, self.code, self.message = status, code, message
        self.fix, self.field, self.request_id = fix, field, request_id

    def to_dict(self) -> Json:
        """The error as the API's error object."""
        return {"status": self.status, "code": self.code, "message": self.message, "field": self.field,
                "fix": self.fix, "request_id": self.request_id}


def _drop_none(values: Mapping[str, Any]) -> Json:
    return {key: value for key, value in values.items() if value is not None}


class GentboxClient:
    """One appliance, one bearer token (an agent token or a session access token)."""

    # Every method's operation, as the OpenAPI document names it (tests check each one exists).
    OPERATIONS: dict[str, tuple[str, str]] = {
        "me": ("GET", "/v1/users/me/"),
        "send_message": ("POST", "/v1/messages/"),
        "list_messages": ("GET", "/v1/messages/"),
        "get_message": ("GET", "/v1/messages/{message_id}/"),
        "update_message": ("PATCH", "/v1/messages/{message_id}/"),
        "list_threads": ("GET", "/v1/messages/threads/"),
        "get_thread": ("GET", "/v1/messages/threads/{thread_id}/"),
        "list_contacts": ("GET", "/v1/contacts/"),
        "create_contact": ("POST", "/v1/contacts/"),
        "create_event": ("POST", "/v1/calendar/events/"),
        "agenda": ("GET", "/v1/agenda/"),
        "create_task": ("POST", "/v1/tasks/"),
        "list_approvals": ("GET", "/v1/approvals/"),
        "approve": ("POST", "/v1/approvals/{approval_id}/approve/"),
        "reject": ("POST", "/v1/approvals/{approval_id}/reject/"),
        "add_domain": ("POST", "/v1/domains/"),
        "verify_domain": ("POST", "/v1/domains/{name}/verify/"),
        "create_inbox": ("POST", "/v1/inboxes/"),
        "create_token": ("POST", "/v1/tokens/"),
        "login": ("POST", "/auth/login/"),
        "reference": ("GET", "/v1/{resource}/reference/"),
    }

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.calls = 0  # HTTP calls made, for callers that measure them
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers=dict(headers or {}))

    def __enter__(self) -> GentboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- the one request function -----------------------------------------------------------
    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                idempotency_key: str | None = None) -> Any:
        """One call: the decoded JSON answer (None for 204), or GentboxError."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        query = {k: ("true" if v is True else "false" if v is False else v)
                 for k, v in _drop_none(params or {}).items()}
        self.calls += 1
        resp = self._http.request(method, path, json=json, params=query, headers=headers)
        if resp.status_code >= 400:
            raise self._error(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json() if resp.headers.get("content-type", "").startswith("application/json") else resp.text

    @staticmethod
    def _error(resp: httpx.Response) -> GentboxError:
        try:
            body = resp.json()
            err = body["error"]
            return GentboxError(resp.status_code, err["code"], err.get("message", ""), err.get("fix"),
                                err.get("field"), body.get("request_id"))
        except (ValueError, KeyError, TypeError):
            return GentboxError(resp.status_code, "http_error", resp.text[:200])

    def _call(self, name: str, *, path_args: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        method, template = self.OPERATIONS[name]
        path = template.format(**{k: quote(str(v), safe="") for k, v in (path_args or {}).items()})
        return self.request(method, path, **kwargs)

    # --- account ----------------------------------------------------------------------------
    def me(self) -> Json:
        """Who the token is, and `next_step`."""
        return self._call("me")

    def login(self, email: str, password: str) -> Json:
        """A session: access_token, refresh_token (also stored as this client's token)."""
        answer = self._call("login", json={"email": email, "password": password})
        self.token = answer["access_token"]
        return answer

    def add_domain(self, domain: str) -> Json:
        """Add a domain (session): its DNS records to publish."""
        return self._call("add_domain", json={"domain": domain})

    def verify_domain(self, name: str) -> Json:
        """Check a domain's DNS records (session)."""
        return self._call("verify_domain", path_args={"name": name})

    def create_inbox(self, address: str, display_name: str | None = None) -> Json:
        """Create an inbox on a verified domain (session)."""
        return self._call("create_inbox", json=_drop_none({"address": address, "display_name": display_name}))

    def create_token(self, inbox_id: str, scopes: Sequence[str], label: str = "agent",
                     requires_approval: Sequence[str] = ()) -> Json:
        """Issue an agent token for an inbox (session); the raw `token` is in this answer only."""
        return self._call("create_token", json={"inbox_id": inbox_id, "label": label, "scopes": list(scopes),
                                                "requires_approval": list(requires_approval)})

    def reference(self, resource: str) -> Json:
        """A resource's reference (`GET /v1/<resource>/reference/`)."""
        return self._call("reference", path_args={"resource": resource})

    # --- mail -------------------------------------------------------------------------------
    def send_message(self, *, to: Sequence[Recipient] = (), cc: Sequence[Recipient] = (),
                     bcc: Sequence[Recipient] = (), subject: str | None = None, text_body: str | None = None,
                     html_body: str | None = None, attachments: Sequence[Attachment] = (),
                     reply_to_message_id: str | None = None, inbox_id: str | None = None,
                     idempotency_key: str | None = None) -> Json:
        """Send (or reply with reply_to_message_id): message_id, thread_id, status; 202 when held."""
        body = _drop_none({"to": list(to), "cc": list(cc), "bcc": list(bcc), "subject": subject,
                           "text_body": text_body, "html_body": html_body, "attachments": list(attachments),
                           "reply_to_message_id": reply_to_message_id, "inbox_id": inbox_id})
        return self._call("send_message", json={k: v for k, v in body.items() if v != []},
                          idempotency_key=idempotency_key)

    def list_messages(self, *, direction: str | None = None, unread: bool | None = None,
                      thread_id: str | None = None, q: str | None = None, label: str | None = None,
                      after: str | None = None, before: str | None = None, limit: int | None = None,
                      cursor: str | None = None, inbox_id: str | None = None) -> Json:
        """A page of messages, newest first: {results, cursor}."""
        return self._call("list_messages", params={
            "direction": direction, "unread": unread, "thread_id": thread_id, "q": q, "label": label,
            "after": after, "before": before, "limit": limit, "cursor": cursor, "inbox_id": inbox_id})

    def get_message(self, message_id: str, *, inbox_id: str | None = None) -> Json:
        """One message in full."""
        return self._call("get_message", path_args={"message_id": message_id}, params={"inbox_id": inbox_id})

    def update_message(self, message_id: str, *, is_read: bool | None = None,
                       labels: Sequence[str] | None = None, inbox_id: str | None = None) -> Json:
        """Mark read or unread, or replace the message's labels."""
        body = _drop_none({"is_read": is_read, "labels": list(labels) if labels is not None else None})
        return self._call("update_message", path_args={"message_id": message_id}, json=body,
                          params={"inbox_id": inbox_id})

    def list_threads(self, *, q: str | None = None, limit: int | None = None, cursor: str | None = None) -> Json:
        """A page of threads."""
        return self._call("list_threads", params={"q": q, "limit": limit, "cursor": cursor})

    def get_thread(self, thread_id: str) -> Json:
        """A thread with its messages."""
        return self._call("get_thread", path_args={"thread_id": thread_id})

    # --- workspace --------------------------------------------------------------------------
    def list_contacts(self, *, q: str | None = None, label: str | None = None, limit: int | None = None) -> Json:
        """A page of contacts."""
        return self._call("list_contacts", params={"q": q, "label": label, "limit": limit})

    def create_contact(self, body: Mapping[str, Any]) -> Json:
        """Create a contact (body as `POST /v1/contacts/` takes it)."""
        return self._call("create_contact", json=dict(body))

    def create_event(self, body: Mapping[str, Any]) -> Json:
        """Create a calendar event (body as `POST /v1/calendar/events/` takes it)."""
        return self._call("create_event", json=dict(body))

    def agenda(self, *, from_: str | None = None, to: str | None = None, limit: int | None = None) -> Json:
        """The agenda: tasks, events and missed replies in one list."""
        return self._call("agenda", params={"from": from_, "to": to, "limit": limit})

    def create_task(self, body: Mapping[str, Any]) -> Json:
        """Create a task (body as `POST /v1/tasks/` takes it)."""
        return self._call("create_task", json=dict(body))

    # --- approvals --------------------------------------------------------------------------
    def list_approvals(self, *, status: str | None = None, limit: int | None = None,
                       inbox_id: str | None = None) -> Json:
        """Held actions."""
        return self._call("list_approvals", params={"status": status, "limit": limit, "inbox_id": inbox_id})

    def approve(self, approval_id: str, *, inbox_id: str | None = None) -> Any:
        """Release a held action (a person's session)."""
        return self._call("approve", path_args={"approval_id": approval_id}, json=_drop_none({"inbox_id": inbox_id}))

    def reject(self, approval_id: str, *, inbox_id: str | None = None) -> Any:
        """Refuse a held action (a person's session)."""
        return self._call("reject", path_args={"approval_id": approval_id}, json=_drop_none({"inbox_id": inbox_id}))
