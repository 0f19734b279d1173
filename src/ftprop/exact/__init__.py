"""Algorithm 1 (exact feasible target propagation): placeholder, filled in by the exact-algorithm work."""
