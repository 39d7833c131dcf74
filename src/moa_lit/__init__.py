"""moa-lit: mechanism-of-action prediction from cell responses."""

__version__ = "0.1.0"
