"""HTTP dialects over the one engine."""
