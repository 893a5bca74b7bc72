"""Everything that prints: the only modules that know rich and matplotlib."""
