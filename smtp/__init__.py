"""The SMTP listener (issue 4): not built yet. It will call appliance.services, never the other
way round (tests/unit/test_layering.py keeps appliance/ free of aiosmtpd)."""
