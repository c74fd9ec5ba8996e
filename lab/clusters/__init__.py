"""Workload clusters: create, track, delete and list them across backings."""
