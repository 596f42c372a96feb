"""Command-line tools built on the bundles."""
