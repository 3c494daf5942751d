"""hashmatch: perceptual-hash matching of known abusive images."""

__version__ = "0.1.0"
