"""Model construction, loading and generation."""
