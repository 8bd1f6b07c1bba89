"""svertka: a lecture on convolutional networks, made real."""

__version__ = "0.1.0"
