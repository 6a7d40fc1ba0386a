"""The HTTP layer: the only part of the kit that imports falcon."""
