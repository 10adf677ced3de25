"""claimscrub schemas: canonical columns, code sets, rule catalog and pandera models."""
