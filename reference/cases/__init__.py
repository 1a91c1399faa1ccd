"""What it is judged on: the case grid, the torch twin of every layer, the one layout conversion."""
