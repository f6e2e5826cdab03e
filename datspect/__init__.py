"""DAT-SPECT classification: SBR cutoffs and a deep CNN across image characteristics.

Subpackages follow the workflow's stages (rules/): io, space, cohorts, preprocess, features,
cnn, evaluation, report, figures, deploy and workflow; pyproject.toml states their layers.
"""

__version__ = "0.1.0"
