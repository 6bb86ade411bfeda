"""Delivery of alerts and incidents to other systems: the notification
envelope, its payload formats (uba JSON, OCSF, CEF, chat) and webhook
signing. An adapter beside storage: it reads the API's JSON mapping of
alerts and incidents and knows nothing of the database."""
