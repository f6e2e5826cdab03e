"""The figures, one PNG per function: results, sbr, qc, training and slab, in the shared style."""
