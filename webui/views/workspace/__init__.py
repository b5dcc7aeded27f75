"""Workspace pages: contacts (and, as they land, calendar, tasks, files)."""
