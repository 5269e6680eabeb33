"""Judge-free held-out metrics on CULTURAX's test split: NLL, pairwise preference, DPO reward against its reference."""
