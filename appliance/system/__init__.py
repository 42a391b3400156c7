"""The appliance's base: the one command runner, errors, paths and settings."""
