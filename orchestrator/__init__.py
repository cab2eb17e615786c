"""Forecast-driven orchestration: telemetry, forecasters, policy, placement, simulator."""
