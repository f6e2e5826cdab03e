"""The MNI 2 mm template space: anatomy from installed atlases, the registration template, where a
slab sits."""
