"""The agency registry: codes, hierarchy, validity and reorganisations."""
