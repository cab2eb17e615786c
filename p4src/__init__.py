"""P4 templates (jinja2) for the v1model and TNA backends, loaded with importlib.resources."""
