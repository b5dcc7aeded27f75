"""Intelligence: the activity timeline, relationships, enrichment settings and models (issue 21)."""
