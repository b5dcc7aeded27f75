"""Intelligence (issue 21): the activity timeline, the relationship graph, enrichment and models."""
