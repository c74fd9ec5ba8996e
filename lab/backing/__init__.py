"""Backing capacity: where each workload cluster's kube-apiserver runs (local processes for now)."""
