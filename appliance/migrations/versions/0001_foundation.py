"""foundation: tenants, users, tokens, waitlist, events

Revision ID: 0001_foundation
Revises: 
Create Date: 2026-11-28 18:38:41.656900
"""
from alembic import op
import sqlalchemy as sa

import appliance.models.base


revision = '0001_foundation'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=True),
    sa.Column('inbox_id', sa.String(length=40), nullable=True),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=40), nullable=True),
    sa.Column('actor', sa.String(length=40), nullable=True),
    sa.Column('occurred_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_inbox_id', ['inbox_id', 'id'], unique=False)
        batch_op.create_index('ix_events_tenant_id', ['tenant_id', 'id'], unique=False)

    op.create_table('idempotency_records',
    sa.Column('principal', sa.String(length=60), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('principal', 'key', name=op.f('pk_idempotency_records'))
    )
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_records_created_at'), ['created_at'], unique=False)

    op.create_table('rate_counters',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('window', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'window', name=op.f('pk_rate_counters'))
    )
    with op.batch_alter_table('rate_counters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_counters_expires'), ['expires'], unique=False)

    op.create_table('system_mail',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('mail_from', sa.String(length=320), nullable=False),
    sa.Column('rcpt_to', sa.String(length=320), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_system_mail'))
    )
    with op.batch_alter_table('system_mail', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_system_mail_rcpt_to'), ['rcpt_to'], unique=False)

    op.create_table('tenants',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants'))
    )
    op.create_table('waitlist_entries',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('request_count', sa.Integer(), nullable=False),
    sa.Column('requested_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=320), nullable=True),
    sa.Column('client_ip', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_entries')),
    sa.UniqueConstraint('email', name=op.f('uq_waitlist_entries_email'))
    )
    op.create_table('domains',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=253), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('domain_use', sa.String(length=32), nullable=False),
    sa.Column('dmarc_policy', sa.String(length=16), nullable=False),
    sa.Column('verification_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('verified_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_domains_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_domains')),
    sa.UniqueConstraint('name', name=op.f('uq_domains_name'))
    )
    with op.batch_alter_table('domains', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_domains_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('signup_tokens',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('waitlist_entry_id', sa.String(length=40), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('redeemed_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('invalidated_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['waitlist_entry_id'], ['waitlist_entries.id'], name=op.f('fk_signup_tokens_waitlist_entry_id_waitlist_entries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signup_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_signup_tokens_token_hash'))
    )
    with op.batch_alter_table('signup_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signup_tokens_waitlist_entry_id'), ['waitlist_entry_id'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('is_operator', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('password_changed_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_users_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('inboxes',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('domain_id', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('default_timezone', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_inboxes_domain_id_domains'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_inboxes_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inboxes')),
    sa.UniqueConstraint('address', name=op.f('uq_inboxes_address'))
    )
    with op.batch_alter_table('inboxes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inboxes_domain_id'), ['domain_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inboxes_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('user_sessions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('access_hash', sa.String(length=64), nullable=False),
    sa.Column('refresh_hash', sa.String(length=64), nullable=False),
    sa.Column('access_expires_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('refresh_expires_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('client_ip', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_sessions')),
    sa.UniqueConstraint('access_hash', name=op.f('uq_user_sessions_access_hash')),
    sa.UniqueConstraint('refresh_hash', name=op.f('uq_user_sessions_refresh_hash'))
    )
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('agent_tokens',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('requires_approval', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=40), nullable=True),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', appliance.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_agent_tokens_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_agent_tokens_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_agent_tokens_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_agent_tokens_token_hash'))
    )
    with op.batch_alter_table('agent_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_tokens_inbox_id'), ['inbox_id'], unique=False)
        batch_op.create_index('ix_agent_tokens_inbox_status', ['inbox_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_tokens_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('messages',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('thread_id', sa.String(length=40), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('is_read', sa.Boolean(), nullable=False),
    sa.Column('created_at', appliance.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_messages_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_messages_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_inbox_created', ['inbox_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_thread_id'), ['thread_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_thread_id'))
        batch_op.drop_index(batch_op.f('ix_messages_tenant_id'))
        batch_op.drop_index('ix_messages_inbox_created')

    op.drop_table('messages')
    with op.batch_alter_table('agent_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_tokens_tenant_id'))
        batch_op.drop_index('ix_agent_tokens_inbox_status')
        batch_op.drop_index(batch_op.f('ix_agent_tokens_inbox_id'))

    op.drop_table('agent_tokens')
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_user_id'))

    op.drop_table('user_sessions')
    with op.batch_alter_table('inboxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inboxes_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_inboxes_domain_id'))

    op.drop_table('inboxes')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_tenant_id'))

    op.drop_table('users')
    with op.batch_alter_table('signup_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signup_tokens_waitlist_entry_id'))

    op.drop_table('signup_tokens')
    with op.batch_alter_table('domains', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_domains_tenant_id'))

    op.drop_table('domains')
    op.drop_table('waitlist_entries')
    op.drop_table('tenants')
    with op.batch_alter_table('system_mail', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_system_mail_rcpt_to'))

    op.drop_table('system_mail')
    with op.batch_alter_table('rate_counters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_counters_expires'))

    op.drop_table('rate_counters')
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_records_created_at'))

    op.drop_table('idempotency_records')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_tenant_id')
        batch_op.drop_index('ix_events_inbox_id')

    op.drop_table('events')
