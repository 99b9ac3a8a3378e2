"""``make bench``: hookfan's performance figures (see docs/performance.md). Not a test suite."""
