"""Webhooks: inbound (verify, store, dispatch) and outbound (signed deliveries to subscribers)."""
