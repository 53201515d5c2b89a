"""Tailor: per-customer email personalization from a shop's customer data."""
