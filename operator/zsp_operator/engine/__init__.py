"""The engine: decides, issues, follows and revokes grants, and sweeps what no grant explains."""
