"""The dashboard's history: compact aggregates of the store's counts over time."""
