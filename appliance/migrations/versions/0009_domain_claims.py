"""domain claims: several tenants may claim a domain name; one verified holder per name

Issue 14, point 1. Before, domains.name was unique: the first tenant to add a name held it, verified
or not, and the worker delivered every tenant's mail for it locally. Now a row is one tenant's
claim on a name:
- uq_domains_name (unique name) goes; uq_domains_name_tenant (one claim per tenant and name, and
  the index for lookups by name) and uq_domains_verified_name (a partial unique index: at most one
  verified row per name) replace it, on both backends.
- expires_at: when a pending claim expires (existing pending claims get 7 days from the upgrade);
  lapsed_at: when another tenant verified the name first (status lapsed).

SQLite cannot drop a table constraint in place: the table is rebuilt (batch mode). Dropping the old
table while foreign keys are enforced would cascade into dkim_keys and be refused by inboxes, and
PRAGMA foreign_keys does nothing inside a transaction: so the rebuild commits what came before,
runs in its own transaction with foreign keys off, checks them (foreign_key_check), commits and
turns them on again. It is skipped when its columns already exist (a rerun after a crash between
that commit and the version stamp).

Revision ID: 0009_domain_claims
Revises: 0008_search_content
Create Date: 2026-12-06
"""
import contextlib
import datetime as dt

import sqlalchemy as sa
from alembic import op

import appliance.models.base


revision = '0009_domain_claims'
down_revision = '0008_search_content'
branch_labels = None
depends_on = None

VERIFIED = sa.text("status = 'verified'")
CLAIM_WINDOW = dt.timedelta(days=7)  # the default of the domain_claim_ttl setting


@contextlib.contextmanager
def _foreign_keys_off(bind):  # noqa: ANN001, ANN202
    """On SQLite: the block runs in its own transaction with foreign keys off, checked at its end."""
    if bind.dialect.name != "sqlite":
        yield
        return
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        yield
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"0009_domain_claims: foreign keys broken by the rebuild: {broken[:5]}")
        bind.exec_driver_sql("COMMIT")
    except BaseException:
        bind.exec_driver_sql("ROLLBACK")
        raise
    finally:
        bind.exec_driver_sql("PRAGMA foreign_keys=ON")
        bind.exec_driver_sql("BEGIN IMMEDIATE")


def _columns(bind) -> set[str]:  # noqa: ANN001
    return {c["name"] for c in sa.inspect(bind).get_columns("domains")}


def upgrade() -> None:
    bind = op.get_bind()
    with _foreign_keys_off(bind):
        if "expires_at" in _columns(bind):
            return
        with op.batch_alter_table('domains', schema=None) as batch_op:
            batch_op.add_column(sa.Column('expires_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True))
            batch_op.add_column(sa.Column('lapsed_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True))
            batch_op.drop_constraint('uq_domains_name', type_='unique')
            batch_op.create_index('uq_domains_name_tenant', ['name', 'tenant_id'], unique=True)
            batch_op.create_index('uq_domains_verified_name', ['name'], unique=True,
                                  sqlite_where=VERIFIED, postgresql_where=VERIFIED)
        domains = sa.table('domains', sa.column('status', sa.String),
                           sa.column('expires_at', appliance.models.base.UTCDateTime(timezone=True)))
        expires = dt.datetime.now(dt.timezone.utc) + CLAIM_WINDOW
        bind.execute(domains.update().where(domains.c.status != 'verified').values(expires_at=expires))


def downgrade() -> None:
    bind = op.get_bind()
    # One row per name again: the verified holder, else the oldest claim. With foreign keys on,
    # so the other claims' DKIM keys go with them.
    op.execute("DELETE FROM domains WHERE status = 'lapsed' OR id IN (SELECT d.id FROM domains d "
               "JOIN domains o ON o.name = d.name AND o.id <> d.id "
               "WHERE d.status <> 'verified' AND (o.status = 'verified' OR o.created_at < d.created_at "
               "OR (o.created_at = d.created_at AND o.id < d.id)))")
    with _foreign_keys_off(bind):
        with op.batch_alter_table('domains', schema=None) as batch_op:
            batch_op.drop_index('uq_domains_verified_name', sqlite_where=VERIFIED, postgresql_where=VERIFIED)
            batch_op.drop_index('uq_domains_name_tenant')
            batch_op.create_unique_constraint('uq_domains_name', ['name'])
            batch_op.drop_column('lapsed_at')
            batch_op.drop_column('expires_at')
