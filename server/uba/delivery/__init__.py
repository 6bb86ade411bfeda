"""Delivery of alert and incident changes: the outbox worker, the
destinations (webhooks, chat, syslog) and the payload formats."""
