"""Column names of the Criteo layout: a label, 13 dense and 26 sparse features."""

LABEL = "label"
DENSE_FEATURES: tuple[str, ...] = tuple(f"I{i}" for i in range(1, 14))
SPARSE_FEATURES: tuple[str, ...] = tuple(f"C{i}" for i in range(1, 27))
NUM_DENSE = len(DENSE_FEATURES)
NUM_SPARSE = len(SPARSE_FEATURES)

# A sparse key of -1 marks a missing (empty) categorical value; real keys are
# the 32-bit hashes read as unsigned integers, so they never collide with it.
MISSING_KEY = -1
