"""framecast.flow."""
