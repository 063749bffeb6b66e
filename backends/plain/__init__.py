"""The plaintext engine: the oracle run as one party process, the baseline of no security."""
