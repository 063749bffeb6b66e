"""Patient data: FHIR extraction, the synthetic generator, and population sources."""
