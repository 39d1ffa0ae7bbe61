"""What a sync leaves on the disk of the machine it runs on, besides the warehouse."""

from __future__ import annotations

import dlt

LOADED_FILES_SETTING = "load.delete_completed_jobs"
"""dlt's setting that deletes a load package's files once they are loaded (``LOAD__DELETE_COMPLETED_JOBS``)."""


def delete_loaded_files() -> None:
    """Have dlt delete each load package's data files once the package is loaded, unless the user chose.

    dlt keeps them by default, in the pipeline's folder, for ever: every row a sync ever loaded stays
    on the worker's disk as parquet, 1.5 GB after the 22 M-span backfill, more than the DuckDB file
    it went into, and growing with every scheduled sync. The package's schema and state stay, and the
    run's trace still lists its jobs; a package with a failed job keeps its files (dlt's rule), so a
    failed load can still be inspected and retried. The default goes in dlt's
    in-memory config; a value in the environment or a toml file wins.
    """
    if dlt.config.get(LOADED_FILES_SETTING) is not None:
        return
    dlt.config[LOADED_FILES_SETTING] = True
