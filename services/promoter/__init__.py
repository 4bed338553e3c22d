"""promoter: introduces image sets into the first wave and advances waves (DESIGN §1)."""
