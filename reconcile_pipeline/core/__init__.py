"""The pure core: snapshot contract, merge rule, rule sets, drift, sources. No Dagster import.

The rules are written out in docs/CONTRACT.md.
"""
