"""Web UI view modules: every module here is imported by webui.init_app (add one, edit nothing)."""
