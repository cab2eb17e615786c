"""Z3 verification of DP-IR programs and tenant merges."""
