"""Durable jobs: the queue, job kinds, workers."""
