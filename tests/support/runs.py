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


#: small.sql.gz: runs 1-4 of one lab home (see tests/fixtures/runs/README.md)
SMALL = "small"
CREATE_DEFAULT, DELETE_DEFAULT, CREATE_HIGH, DELETE_HIGH = 1, 2, 3, 4
CREATE_LONGEST_PHASE = "bmh_provisioned"
