"""Reconciliation of the workspace snapshot table: a pure core plus a Dagster code location."""
