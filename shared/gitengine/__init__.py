"""The git engine: pygit2 on persistent bare clones, no working tree (docs/architecture.md)."""
