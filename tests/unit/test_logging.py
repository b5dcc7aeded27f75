"""The one logging setup: JSON lines with request/message/queue ids, and no secret ever written."""
from __future__ import annotations

import io
import json
import logging
import smtplib

import pytest

from appliance.logging_setup import REDACTED, redact, set_log_fields, setup_logging
from smtp.server import Listener
from tests.world import PASSWORD


@pytest.fixture
def captured(settings):
    """setup_logging(settings) writing into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()

    def install(use=settings) -> io.StringIO:  # noqa: ANN001
        setup_logging(use, buffer)
        return buffer
    yield install
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    set_log_fields(request_id=None, message_id=None, queue_id=None)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_the_context_ids(captured) -> None:
    buffer = captured()
    set_log_fields(request_id="req_1", queue_id="obq_2")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("gentbox.test").exception("delivery of %s failed", "x@example.com")
    [record] = lines(buffer)
    assert record["level"] == "ERROR" and record["logger"] == "gentbox.test"
    assert record["message"] == "delivery of x@example.com failed"
    assert record["request_id"] == "req_1" and record["queue_id"] == "obq_2" and "message_id" not in record
    assert record["time"].endswith("Z") and "ValueError: boom" in record["exception"]


def test_text_format_for_a_terminal(captured, make_settings) -> None:
    buffer = captured(make_settings(log_format="text"))
    set_log_fields(message_id="msg_9")
    logging.getLogger("gentbox.test").warning("hello")
    line = buffer.getvalue().strip()
    assert " WARNING gentbox.test: hello [message_id=msg_9]" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_auto_format_is_text_on_a_terminal_and_json_elsewhere(settings) -> None:
    import os
    import pty

    from appliance.logging_setup import JsonFormatter, TextFormatter, make_handler
    assert settings.log_format == "auto"
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        assert isinstance(make_handler(settings, terminal).formatter, TextFormatter)
    os.close(leader)
    assert isinstance(make_handler(settings, io.StringIO()).formatter, JsonFormatter)


@pytest.mark.parametrize("text", [
    "Authorization: Bearer eyJhbGciOi.secretpart",
    "token gent_AbCdEf0123456789xyz was used",
    '{"email": "a@b.c", "password": "hunter2hunter2"}',
    "GET /signup?signup_token=s3cr3tS1gnup&x=1",
    "relay_password=pa55word secret_key: abcdefghijkl",
    "Authorization: Basic dXNlcjpwYXNzd29yZA==",
])
def test_secrets_are_redacted(text: str) -> None:
    out = redact(text)
    assert REDACTED in out
    for secret in ("secretpart", "gent_AbCdEf0123456789xyz", "hunter2hunter2", "s3cr3tS1gnup", "pa55word",
                   "abcdefghijkl", "dXNlcjpwYXNzd29yZA=="):
        assert secret not in out


def test_web_requests_log_their_id_and_never_a_token_or_password(captured, make_settings, make_app, world_for) -> None:
    buffer = captured(make_settings(log_level="DEBUG"))
    app = make_app(make_settings())
    leaked = logging.getLogger("gentbox.careless")

    @app.post("/careless-test-view")
    def careless():  # noqa: ANN202 - code that logs a header and a body it should not
        from flask import request
        leaked.warning("headers %s body %s", dict(request.headers), request.get_data(as_text=True))
        return {"ok": True}

    client = app.test_client()
    world = world_for(client)
    person = world.owner()
    agent = world.agent(person, world.inbox(person), ["email:read"])
    secrets = [person.access_token, person.refresh_token, agent.raw, PASSWORD, "wrong-password-123456"]
    answers = [
        client.post("/auth/login/", json={"email": person.email, "password": PASSWORD}),
        client.post("/auth/login/", json={"email": person.email, "password": "wrong-password-123456"}),
        client.get("/v1/users/me/", headers=person.auth),
        client.get("/v1/inboxes/", headers=agent.auth),
        client.get("/v1/users/me/", headers={"Authorization": f"Bearer {agent.raw}x"}),
        client.post("/careless-test-view", headers=agent.auth, json={"password": PASSWORD}),
    ]
    secrets.append(answers[0].get_json()["access_token"])
    records = lines(buffer)
    output = buffer.getvalue()
    for secret in secrets:
        assert secret not in output
    careless_line = next(r for r in records if r["logger"] == "gentbox.careless")
    assert REDACTED in careless_line["message"]
    access = [r for r in records if r["logger"] == "gentbox.access"]
    assert len(access) == len(answers)
    for record, resp in zip(access, answers):
        assert record["request_id"] == resp.headers["X-Request-Id"]
        assert str(resp.status_code) in record["message"]
    assert access[1]["message"].startswith("POST /auth/login/ 401")


def test_smtp_records_carry_the_queue_and_message_ids(captured, store, settings, world) -> None:
    buffer = captured()
    owner = world.owner()
    world.inbox(owner, "desk@logs.test")
    listener = Listener(store, settings, host="127.0.0.1", port=0)
    address = listener.start()
    try:
        with smtplib.SMTP(*address, local_hostname="client.example", timeout=30) as smtp:
            smtp.sendmail("a@elsewhere.example", ["desk@logs.test"],
                          b"From: a@elsewhere.example\r\nSubject: x\r\n\r\nhi\r\n")
    finally:
        listener.stop()
    [stored] = [r for r in lines(buffer) if "stored as" in r["message"]]
    assert stored["message_id"].startswith("msg_") and stored["message_id"] in stored["message"]
    assert stored["queue_id"] in stored["message"]
