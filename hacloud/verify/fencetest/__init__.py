"""fence-test: prove the pair fails over (round runner, client, analysis, timeline)."""
