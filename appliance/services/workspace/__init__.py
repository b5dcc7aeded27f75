"""Workspace: contacts, calendar, tasks and the agenda, files (the areas people plan with)."""
