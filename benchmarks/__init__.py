"""claimscrub benchmarks (make bench)."""
