"""Tests of the REST gateway (Envoy) and the dashboard page."""
