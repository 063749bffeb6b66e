"""The harness: data sources, experiment grids, measurement, and the CLI."""
