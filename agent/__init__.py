"""The Bulwark backup agent (runs on the protected machine; never imports the appliance's code)."""

__version__ = "0.1.0"
