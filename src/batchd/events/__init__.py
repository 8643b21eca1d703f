"""Event delivery: server-sent events (webhooks join here)."""
