"""Workspace: contacts, calendar, tasks and files (issues 16-18, 27)."""
