"""Typed messages, one module per topic family. ``registry`` maps each topic to its model."""
