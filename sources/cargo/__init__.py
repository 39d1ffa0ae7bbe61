"""Cargo source for dlt: orchestration tables (runs, batches, spans, records) via orchestration/query."""
