"""claimscrub pipeline: ingest, validate, report and orchestrate."""
