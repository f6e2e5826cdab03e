"""Human-readable results: results/summary.md and the report's HTML tables."""
