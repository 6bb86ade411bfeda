"""Helpers for testing detectors and the service, shipped with the server so
a plug-in's own tests can use them: the conformance checks every detector
must pass (`checks`), deterministic synthetic activity with a normal and an
anomalous continuation per built-in detector (`synthetic`), and the demo
population with labelled attacks (`simulate`)."""
