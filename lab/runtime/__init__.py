"""The runtime layer: processes, ports, files, logs and waits, with no knowledge of what runs.

Everything above it (the management stack, the backings, the node simulator) starts processes,
writes secrets and waits through these modules; they import nothing of lab but lab.config and
lab.errors, so any layer may use them without an import cycle.

Modules: supervise (supervisord config and XML-RPC), ports (loopback, ephemeral range, who
listens), files (the one private-file writer), logs (last line and tail of a log), poll (one
deadline loop).
"""
