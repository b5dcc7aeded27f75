"""Migration 0021 (contacts) both ways on both backends: down drops the contact tables and the
search index (the FTS5 table and its triggers on SQLite, the trigram index on PostgreSQL), up
brings them back and search works again."""
from __future__ import annotations

from sqlalchemy import inspect

from appliance.models import Inbox
from appliance.services.workspace import contacts
from tests.helpers import alembic


def test_the_contacts_migration_goes_down_and_up_and_search_works(world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    alembic(store, "downgrade", "0020_scheduler")
    assert "contacts" not in inspect(store.engine).get_table_names()
    alembic(store, "upgrade", "head")
    with store.session() as db:
        inbox = db.get(Inbox, inbox_id)
        contacts.create_contact(db, inbox, {"full_name": "Back Again", "emails": [{"address": "back@example.org"}],
                                            "phones": [{"number": "+1 555 0199"}]}, actor=None)
    with store.session() as db:
        inbox = db.get(Inbox, inbox_id)
        for q in ("again", "back@exa", "5550199"):
            rows, total = contacts.list_contacts(db, inbox, q=q)
            assert total == 1 and rows[0].full_name == "Back Again", q
