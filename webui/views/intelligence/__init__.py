"""Intelligence (issue 21): phishing marks on the message page, the contact's timeline and relationships."""
