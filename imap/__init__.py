"""The IMAP server (issue 25): people read the inboxes in their mail clients.

`gentbox imap` serves IMAP4rev1 on `imap_port` (STARTTLS before LOGIN) and `imaps_port` (TLS).
The protocol layer is written here (docs/imap.md says why pymap was not taken); the folders,
UIDs and flags are the store's (appliance/services/mail/mailboxes.py).
"""
