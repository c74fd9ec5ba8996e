"""Recorded runs committed as fixtures (tests/fixtures/runs/*.sql.gz; see record.py there) loaded
into a lab home's records file, so `lab report` reads them as it reads any run."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

from lab import records

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runs"


def load(name: str, db_path: Path) -> Path:
    """Write the dump `name` (without .sql.gz) into a fresh records file at db_path."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    script = gzip.decompress((FIXTURES / f"{name}.sql.gz").read_bytes()).decode()
    with sqlite3.connect(db_path) as db:
        db.executescript(script)
    db.close()
    records.Records(db_path).close()  # lab's schema version and indexes, as a real run leaves them
    return db_path


#: small.sql.gz (tests/fixtures/runs/README.md): runs 1-4 of one lab home, and what `lab report`
#: says of them (read from the recording; a new recording must update these)
SMALL = "small"
CREATE_DEFAULT, DELETE_DEFAULT, CREATE_HIGH, DELETE_HIGH = 1, 2, 3, 4
TUNINGS = ("default", "high")
#: run 1: kcp-manager's kubeadmcontrolplane queue, 31 item-seconds
CREATE_DEFAULT_QUEUE = "kcp-manager/kubeadmcontrolplane"
#: run 1: capm3-manager peaked at 23.7 req/s against its default --kube-api-qps 20; in run 3
#: (profile high, QPS 100) at 32.2 req/s: 32 %
THROTTLED_AT_DEFAULT = "capm3-manager"
#: run 4: mutating calls p99 1.257 s > 1 s (the machine's load average was ~14)
DELETE_HIGH_SLO_BREACH = "mutating"
CREATE_LONGEST_PHASE = "bmh_provisioned"
DELETE_LONGEST_PHASE = "namespace_deleted"
