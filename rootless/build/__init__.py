"""`rootless build`: Dockerfile parsing, build context, cache and the builder."""
