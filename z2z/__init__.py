"""z2z: a Zeroconf-to-Zeroconf gateway."""

__version__ = "0.1.0"
