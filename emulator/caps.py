"""Cargo's query caps (REFERENCE.md section 4.3), applied to every caller query as session settings."""

from __future__ import annotations

MAX_EXECUTION_TIME_S = 30
MAX_RESULT_ROWS = 10_000
MAX_ROWS_TO_READ = 10_000_000
MAX_COLUMNS_TO_READ = 50
MAX_SUBQUERY_DEPTH = 5

READER_USER = "cargo_reader"
"""Name shown in access-denied messages, as ClickHouse prints the user of a refused query."""


def cap_settings(truncate_results: bool = False) -> dict[str, int | str]:
    """The settings a caller can never override (the guard refuses SETTINGS, readonly=1 does too)."""
    return {
        "max_execution_time": MAX_EXECUTION_TIME_S,
        "max_result_rows": MAX_RESULT_ROWS,
        "result_overflow_mode": "break" if truncate_results else "throw",
        "max_rows_to_read": MAX_ROWS_TO_READ,
        "max_columns_to_read": MAX_COLUMNS_TO_READ,
        "max_subquery_depth": MAX_SUBQUERY_DEPTH,
        "output_format_json_quote_64bit_integers": 0,
        "output_format_json_quote_denormals": 0,
        "date_time_output_format": "simple",
        "use_query_cache": 0,
    }
