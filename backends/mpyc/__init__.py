"""MPyC backend: the criteria IR evaluated by MPyC parties (Shamir, semi-honest, honest majority).

Two protocols translate the same IR: `shamir` (vectorised over all patients
with secure arrays, so rounds do not grow with the population) and
`paper-loop` (the paper's per-patient sequential evaluation, for comparison).
`job` describes a run, `party` is the program each party process executes.
"""
