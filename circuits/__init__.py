"""The criteria IR and what every engine shares: codes, query formats, encoding, oracle, cost.

This package imports nothing else of cohortbench; backends import only it.
"""
