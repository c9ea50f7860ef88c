"""framecast.eval."""
