"""Task registry, handler context and the built-in example tasks."""
