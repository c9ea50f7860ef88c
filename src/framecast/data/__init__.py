"""framecast.data."""
