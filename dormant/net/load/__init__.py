"""Loading an untrusted network file without running it: the in-memory network model, the inert
unpickler, decoding of pickled code, the loaders of every format, and the package's own format."""
