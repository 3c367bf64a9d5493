"""The catalog: datasets, classifications, regions, and the GraphStore that keeps them."""
