"""promoter: introduces image sets into the first wave and advances waves
(docs/architecture.md, Waves and gates)."""
