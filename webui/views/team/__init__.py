"""Team collaboration (issue 16): distribution lists, reply templates, thread notes and thread assignment."""
