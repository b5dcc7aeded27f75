"""workflows: reserved for issue 20 points 1, 2, 6 (workflows, runs, recipes); no schema change yet

Revision ID: 0031_workflows
Revises: 0030_files
Create Date: 2026-12-06
"""

revision = '0031_workflows'
down_revision = '0030_files'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
