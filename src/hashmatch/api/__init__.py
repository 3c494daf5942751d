"""The HTTP service: app factory, routes, error mapping."""
