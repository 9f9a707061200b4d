"""The network zoo: hash functions compiled to integer Linear+ReLU networks, like the opaque puzzle.

``build_net("md5", secret="bitter lesson")`` returns a ``BuiltNet`` whose network outputs exactly 1.0
on the secret and 0.0 elsewhere. Pieces: ``circuit`` (bit-level builder), ``compile`` (circuit ->
layers), ``message`` (input head: count, pad, lay out bytes), ``hashes`` (MD5, SHA-1, SHA-256, toy),
``comparator`` (hat tail), ``reference`` (plain-Python digests, reduced rounds), ``build`` (verify,
save, cache).
"""

from dormant.zoo.net.build import BuiltNet, ZooNetError, build_net

__all__ = ["BuiltNet", "ZooNetError", "build_net"]
