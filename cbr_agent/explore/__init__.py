"""Looking into snapshots without restoring them: find, diff, stats, dump, and snapshot filters.

Built on the repository's public API only (the CLI formats what these functions return).
"""
