"""framecast.training."""
