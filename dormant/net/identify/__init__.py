"""What function a network computes: constant tables of known hashes, the reference hashes, a
scanner of biases for those tables, identification by matching neurons with reference internals,
word-level recovery, and the comparator's target."""
