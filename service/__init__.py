"""HTTP layer: app factory, routes, schemas, error mapping, settings."""
