"""Intelligence (issue 21): phishing verdicts, next steps and digests (builtin, no network), the
activity timeline and the relationship graph."""
