"""Ready-made checks for common dependencies. Each module imports its client library lazily."""
