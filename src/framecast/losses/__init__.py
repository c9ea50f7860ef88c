"""framecast.losses."""
