"""Multiparty homomorphic encryption: OpenFHE threshold BFV, one party process per site."""
