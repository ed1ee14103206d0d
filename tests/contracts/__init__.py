"""Contract suites every backend of a seam must pass; each backend's test module is a few lines."""
