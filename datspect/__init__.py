"""DAT-SPECT classification workflow: imaging, simulation, SBR, splits, CNN and statistics."""

__version__ = "0.1.0"
