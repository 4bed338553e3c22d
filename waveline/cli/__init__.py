"""The ``waveline`` console script."""
