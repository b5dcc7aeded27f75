"""Workspace: contacts (and, as they land, calendar, tasks, files) of an inbox."""
