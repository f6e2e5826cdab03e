"""What the methods read from a normalized image: putamen SBRs and the CNN's slab or box."""
