"""Issue 26.5: a libpq multi-host database URL (a primary and its replica) reaches libpq whole."""
from __future__ import annotations

from appliance.db import libpq_url, make_engine


def test_a_multi_host_url_becomes_one_host_per_server() -> None:
    engine = make_engine("postgresql://gentbox:pw@db1:5432,db2:5433/gentbox?target_session_attrs=read-write")
    _args, kwargs = engine.dialect.create_connect_args(engine.url)
    assert (kwargs["host"], kwargs["port"], kwargs["dbname"]) == ("db1,db2", "5432,5433", "gentbox")
    assert kwargs["target_session_attrs"] == "read-write" and kwargs["password"] == "pw"
    engine.dispose()


def test_a_single_host_url_is_left_as_it_is() -> None:
    engine = make_engine("postgresql://gentbox:pw@db1:5432/gentbox")
    assert (engine.url.host, engine.url.port, engine.url.database) == ("db1", 5432, "gentbox")
    engine.dispose()
    assert libpq_url("postgresql+psycopg://u@h1:1,h2:2/d") == "postgresql://u@h1:1,h2:2/d"
