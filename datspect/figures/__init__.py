"""The workflow's figures, one PNG per function."""
