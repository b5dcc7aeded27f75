"""Team collaboration (issue 16): reply templates, thread notes and thread assignment."""
