"""The pure core: snapshot contract, merge rule, derivations, drift, sources. No Dagster import.

The rules are written out in docs/CONTRACT.md.
"""
