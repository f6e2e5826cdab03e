"""Reading and writing: scans (NIfTI, DICOM) with one clear error per problem, TSV tables, atomic
outputs."""
