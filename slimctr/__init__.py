"""slimctr: CTR models that get smaller and faster, measured by AUC."""

__version__ = "0.1.0"
