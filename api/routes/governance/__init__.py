"""Governance: approvals of held agent actions (and, as they land, caps, audit, compliance)."""
