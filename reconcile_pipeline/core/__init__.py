"""The pure core: snapshot contract, merge rule, derivations, drift, sources. No Dagster import."""
