"""Domains: the tenant's domains, their DNS records, DKIM keys and MTA-STS."""
