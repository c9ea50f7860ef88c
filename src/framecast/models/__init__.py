"""framecast.models."""
