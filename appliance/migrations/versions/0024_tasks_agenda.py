"""tasks_agenda: messages.automated for the agenda's missed replies, and tasks by due time (issue 18)

`messages.automated` records whether received mail was sent by a machine or to a list
(Auto-Submitted other than `no`, Precedence bulk/list/junk, List-Id): the agenda never lists
such a thread as a missed reply. Rows stored before this column are NULL, and the agenda reads
their headers instead. `ix_tasks_inbox_due` orders an inbox's tasks by due time.

Revision ID: 0024_tasks_agenda
Revises: 0023_distribution_lists
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

revision = '0024_tasks_agenda'
down_revision = '0023_distribution_lists'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no default) on both backends: no table rebuild of messages.
    op.add_column('messages', sa.Column('automated', sa.Boolean(), nullable=True))
    op.create_index('ix_tasks_inbox_due', 'tasks', ['inbox_id', 'due'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tasks_inbox_due', table_name='tasks')
    # Native DROP COLUMN on both (SQLite 3.35+): a batch rebuild of messages would have to
    # drop the table that the search index's triggers and other tables' keys refer to.
    op.execute('ALTER TABLE messages DROP COLUMN automated')
