"""Gentbox: the appliance core (settings, store, models and services). No Flask, no aiosmtpd."""
