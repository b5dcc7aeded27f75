"""Database errors are logged by the edges; they must never carry the statement's values."""
import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from appliance.ids import new_id
from appliance.models import WaitlistEntry
from appliance.clock import utcnow


def test_database_errors_do_not_show_parameter_values(store):
    row = dict(email="secret-looking@example.com", status="pending", request_count=1, requested_at=utcnow(),
               client_ip="")
    with store.session() as db:
        db.execute(insert(WaitlistEntry).values(id=new_id("wl"), **row))
    with pytest.raises(IntegrityError) as caught:
        with store.session() as db:
            db.execute(insert(WaitlistEntry).values(id=new_id("wl"), **row))
    assert "secret-looking" not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)
