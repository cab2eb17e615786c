"""Mininet edge-site testbed: deploy, monitor, forecast, migrate."""
