"""git-writer: the single serialized committer (docs/architecture.md, Git rules)."""
