"""The network zoo: hash functions compiled to integer Linear+ReLU networks, like the opaque puzzle.

``build_net("md5", secret="bitter lesson")`` returns a ``BuiltNet`` whose network outputs exactly 1.0
on the secret and 0.0 elsewhere. Pieces: ``circuit`` (bit-level builder), ``compile`` (circuit ->
layers), ``message`` (input head: count, pad, lay out bytes), ``hashes`` (MD5, SHA-1, SHA-256, toy),
``comparator`` (hat tail), ``reference`` (plain-Python digests, reduced rounds), ``build`` (verify,
save, cache).

Example::

    from dormant.net.logic.simulate import run_text
    from dormant.zoo.net import build_net

    built = build_net("sha1", "lantern", rounds=20)      # a reduced-round SHA-1 net, cached
    out, _ = run_text(built.network, ["lantern", "lanterns"])
    out[:, 0]                                             # array([1., 0.])
"""

from dormant.zoo.net.build import BuiltNet, NetSpec, ZooNetError, build_net

__all__ = ["BuiltNet", "NetSpec", "ZooNetError", "build_net"]
