"""Service-graph language, ServiceGraph IR, DP-IR and the InfraNF library."""
