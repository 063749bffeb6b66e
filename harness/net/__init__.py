"""The network between parties: the shaping relay, faults, named networks, kernel shaping, isolation."""
