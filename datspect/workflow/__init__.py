"""What the Snakemake rules call: config checks, the steps, the warm worker pool, provenance."""
