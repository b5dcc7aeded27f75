"""Team collaboration (issue 16): distribution lists (and, as they land, notes, assignment, templates)."""
