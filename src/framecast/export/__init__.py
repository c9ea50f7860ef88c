"""framecast.export."""
