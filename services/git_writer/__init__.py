"""git-writer: the single serialized committer (DESIGN §1, §2)."""
