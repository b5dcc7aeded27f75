"""calendar: calendars, calendar_events and calendar_invitations (issue 18)

`calendars` (an inbox's calendars, `default` and `tasks` made lazily, the feed key's SHA-256),
`calendar_events` (events and recurring series: UTC times with their zone, RRULE, EXDATEs and
changed occurrences as JSON, organiser and participants, the iCalendar UID and SEQUENCE) and
`calendar_invitations` (a received iMIP message and the event it made or changed). The reader of
received invitations starts after the events that exist at upgrade time (its `alert_cursors` row
`calendar-imip`), so an appliance upgraded with years of mail does not turn old invitations into
events.

Revision ID: 0025_calendar
Revises: 0024_tasks_agenda
Create Date: 2026-12-06
"""
import datetime as dt

from alembic import op
import sqlalchemy as sa

import appliance.models.base

revision = '0025_calendar'
down_revision = '0024_tasks_agenda'
branch_labels = None
depends_on = None

_dt = appliance.models.base.UTCDateTime


def _fk(table: str, column: str, target: str):  # noqa: ANN202
    return sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                   ondelete='CASCADE')


def upgrade() -> None:
    op.create_table('calendars',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('color', sa.String(length=7), nullable=True),
    sa.Column('feed_key_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('calendars', 'tenant_id', 'tenants'),
    _fk('calendars', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calendars'))
    )
    with op.batch_alter_table('calendars', schema=None) as batch_op:
        batch_op.create_index('ix_calendars_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('uq_calendars_inbox_name', ['inbox_id', 'name'], unique=True)
        batch_op.create_index('uq_calendars_feed_key_hash', ['feed_key_hash'], unique=True)

    op.create_table('calendar_events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('calendar_id', sa.String(length=40), nullable=False),
    sa.Column('ical_uid', sa.String(length=255), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('location', sa.String(length=500), nullable=False),
    sa.Column('start', _dt(timezone=True), nullable=False),
    sa.Column('end', _dt(timezone=True), nullable=False),
    sa.Column('all_day', sa.Boolean(), nullable=False),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('recurrence', sa.String(length=500), nullable=True),
    sa.Column('exdates', sa.JSON(), nullable=False),
    sa.Column('overrides', sa.JSON(), nullable=False),
    sa.Column('organizer', sa.String(length=320), nullable=False),
    sa.Column('participants', sa.JSON(), nullable=False),
    sa.Column('reminders', sa.JSON(), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('source_message_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    sa.Column('updated_at', _dt(timezone=True), nullable=False),
    _fk('calendar_events', 'tenant_id', 'tenants'),
    _fk('calendar_events', 'inbox_id', 'inboxes'),
    _fk('calendar_events', 'calendar_id', 'calendars'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_events'))
    )
    with op.batch_alter_table('calendar_events', schema=None) as batch_op:
        batch_op.create_index('ix_calendar_events_tenant_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_calendar_events_inbox_start', ['inbox_id', 'start'], unique=False)
        batch_op.create_index('uq_calendar_events_inbox_uid', ['inbox_id', 'ical_uid'], unique=True)

    op.create_table('calendar_invitations',
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('inbox_id', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=True),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('organizer', sa.String(length=320), nullable=False),
    sa.Column('created_at', _dt(timezone=True), nullable=False),
    _fk('calendar_invitations', 'message_id', 'messages'),
    _fk('calendar_invitations', 'tenant_id', 'tenants'),
    _fk('calendar_invitations', 'inbox_id', 'inboxes'),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_calendar_invitations'))
    )
    with op.batch_alter_table('calendar_invitations', schema=None) as batch_op:
        batch_op.create_index('ix_calendar_invitations_tenant_id', ['tenant_id', 'message_id'], unique=False)

    last = op.get_bind().execute(sa.text('SELECT COALESCE(MAX(seq), 0) FROM events')).scalar()
    cursors = sa.table('alert_cursors', sa.column('name', sa.String), sa.column('last_seq', sa.BigInteger),
                       sa.column('updated_at', _dt(timezone=True)))
    op.bulk_insert(cursors, [{'name': 'calendar-imip', 'last_seq': int(last or 0),
                              'updated_at': dt.datetime.now(dt.timezone.utc)}])


def downgrade() -> None:
    op.execute("DELETE FROM alert_cursors WHERE name = 'calendar-imip'")
    with op.batch_alter_table('calendar_invitations', schema=None) as batch_op:
        batch_op.drop_index('ix_calendar_invitations_tenant_id')
    op.drop_table('calendar_invitations')
    with op.batch_alter_table('calendar_events', schema=None) as batch_op:
        batch_op.drop_index('uq_calendar_events_inbox_uid')
        batch_op.drop_index('ix_calendar_events_inbox_start')
        batch_op.drop_index('ix_calendar_events_tenant_id')
    op.drop_table('calendar_events')
    with op.batch_alter_table('calendars', schema=None) as batch_op:
        batch_op.drop_index('uq_calendars_feed_key_hash')
        batch_op.drop_index('uq_calendars_inbox_name')
        batch_op.drop_index('ix_calendars_tenant_id')
    op.drop_table('calendars')
