"""Bulwark appliance: the core library and the bulwarkd daemon (no web framework here)."""

__version__ = "0.1.0"
