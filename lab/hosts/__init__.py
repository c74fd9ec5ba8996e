"""Standalone BareMetalHosts (`lab create-hosts`, `lab delete-hosts`): BMO-only runs.

The seed's produce-hosts.sh and produce-available-hosts.sh, measured: each host's BMO states
(registering, inspecting, preparing, available, provisioning, provisioned; deprovisioning, powering
off, deleting on delete) are timed into the run records like a cluster's phases, so `lab report`
gives their percentiles. Modules: inventory (what exists), tracker (the watch that times states),
create, delete.
"""
