"""Disks and pool health: pool state, scrubs, capacity history."""
