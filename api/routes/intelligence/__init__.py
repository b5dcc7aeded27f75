"""Intelligence (issue 21): phishing marks, digests, enrichment settings, activity and relationships."""
