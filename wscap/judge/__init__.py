"""RFC checks, chain linking, hop diffs, verdicts."""
