"""Delivery of alert and incident changes to other systems: the outbox's
sender threads (worker), the destinations' transports (webhooks, chat,
syslog), the notification envelope, its payload formats (uba JSON, OCSF,
CEF, chat) and webhook signing. An adapter beside storage: it reads the
API's JSON mapping of alerts and incidents."""
