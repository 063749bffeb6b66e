"""Privacy budgets of data sources and the ledger of their releases."""
