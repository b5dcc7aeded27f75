"""The HTTP edge: the /v1/ and /auth/ JSON API (and the app factory that mounts the web UI)."""
