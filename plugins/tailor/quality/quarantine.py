"""raw._quarantine: record versions a quality gate set aside, which staging leaves out.

The gate (tailor.quality.gate) owns the table: it writes and replaces its rows. It is created with the raw layer
(tailor.raw), not by the first gate, because dbt's staging always reads it. Importing this does not import GX.
"""

from __future__ import annotations

QUARANTINE_DDL = """
create table if not exists raw._quarantine (
    table_name varchar not null,      -- raw.<source>_<entity>
    record_id varchar not null,
    updated_at timestamptz not null,
    reason varchar not null,          -- the expectation, its column and what it means
    value varchar,                    -- the failing value
    suite varchar not null,
    run_id varchar not null,
    as_of timestamptz not null,
    quarantined_at timestamptz not null
);
"""
