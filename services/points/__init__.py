"""points: the moral bank, a double-entry ledger of volunteer points."""
