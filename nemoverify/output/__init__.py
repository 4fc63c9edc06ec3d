"""What nemoverify writes: output files planned and written whole, and the renderers."""
