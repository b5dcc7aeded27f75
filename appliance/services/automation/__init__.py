"""Automation: the event log (and, as they land, alerts and workflows)."""
