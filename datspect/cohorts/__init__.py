"""Where scans come from: cohort sheets, the embedded simulator and folders of published slabs."""
