"""Intelligence pages (issue 21): a contact's timeline and the inbox's relationships."""
