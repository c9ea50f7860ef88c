"""framecast.experiments."""
