"""phishing: messages.enrichment (phishing verdict, next step) and the per-tenant naive Bayes model (issue 21)

`messages.enrichment` holds what the worker found for a received message ({phishing: {verdict,
score, reasons}, next_step: {action, summary, due}}), null until enriched. `phishing_models` holds
each tenant's naive Bayes counts, learned from people marking mail as phishing or not.

Revision ID: 0033_phishing
Revises: 0032_sender_rules
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0033_phishing'
down_revision = '0032_sender_rules'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no default) on both backends: no table rebuild of messages.
    op.add_column('messages', sa.Column('enrichment', sa.JSON(), nullable=True))
    op.create_table('phishing_models',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('phishing_docs', sa.Integer(), nullable=False),
    sa.Column('safe_docs', sa.Integer(), nullable=False),
    sa.Column('tokens', sa.JSON(), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_phishing_models_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_phishing_models'))
    )


def downgrade() -> None:
    op.drop_table('phishing_models')
    # Native DROP COLUMN on both (SQLite 3.35+): a batch rebuild of messages would have to drop
    # the table that the search index's view, triggers and other tables' keys refer to.
    op.execute('ALTER TABLE messages DROP COLUMN enrichment')
