"""Workspace: contacts, calendar, tasks and the agenda, files."""
