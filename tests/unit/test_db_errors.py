"""Database errors are logged by the edges; they must not carry the statement's bound values."""
import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from appliance.ids import new_id
from appliance.models import WaitlistEntry
from appliance.clock import utcnow


def test_database_errors_do_not_show_parameter_values(store):
    # The duplicate key itself may appear in PostgreSQL's own DETAIL line; the other bound values
    # (message bodies, sealed blobs, anything) must not.
    row = dict(email="dup@example.com", status="pending", request_count=1, requested_at=utcnow(),
               client_ip="secret-looking-value")
    with store.session() as db:
        db.execute(insert(WaitlistEntry).values(id=new_id("wl"), **row))
    with pytest.raises(IntegrityError) as caught:
        with store.session() as db:
            db.execute(insert(WaitlistEntry).values(id=new_id("wl"), **row))
    assert "secret-looking" not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)
