"""Identity: accounts, sign-in, sessions, members, inboxes and agent tokens."""
