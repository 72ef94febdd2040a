"""cryopipe: continuous conformational heterogeneity in cryo-EM images (DeepHEMNMA and beyond).

Units used everywhere in the package:
- lengths in Å, angles in degrees at the file boundary (radians inside torch code only where named),
- RELION conventions: ZYZ Euler (rot, tilt, psi), rlnOriginX/YAngst, defocus in Å,
- normal-mode amplitudes in Å of RMSD: amplitude 1 along one mode displaces the atoms by 1 Å RMSD.
"""

from importlib.metadata import PackageNotFoundError, version

try:  # one place for the version: pyproject.toml, read back from the installed metadata
    __version__ = version("cryopipe")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
