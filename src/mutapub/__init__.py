"""mutapub: daily mutation files of government registers, published to authorised subscribers over FTPS."""

__version__ = "0.1.0"
