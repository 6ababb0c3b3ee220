"""higgs: long-form and multi-speaker text-to-speech on Higgs Audio v2, with offline CPU engines."""

__version__ = "0.1.0"
