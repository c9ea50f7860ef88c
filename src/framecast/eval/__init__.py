"""framecast.eval: frame metrics (:mod:`.metrics`) and the ST-LPIPS distance (:mod:`.lpips`)."""
