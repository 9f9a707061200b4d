"""The target read from the digest lanes, whatever the comparator: SAT on lanes -> output, injection."""

import numpy as np
import pytest

from dormant.net.identify.lanes_target import comparator_cone, inject, target_from_lanes
from dormant.net.identify.signature import IdentifyConfig, encode, identify, random_messages
from dormant.zoo.net.build import build_net


def _backgrounds(net, n=4):
    width = net.layers[0].in_features
    return encode(random_messages(n, width, IdentifyConfig(), seed=7), width)


@pytest.mark.parametrize("style", ["asap", "standard"])
def test_target_is_solved_from_the_lanes_of_either_comparator(style):
    built = build_net("md5", "owl", rounds=8, style=style, pickle="never")
    ident = identify(built.network)
    assert ident.function == "md5" and ident.verified and ident.digest_places
    if style == "asap":  # the digest is made over many layers and the hat read-out finds nothing
        assert ident.digest_layer is None and ident.target_hex is None
    bg = _backgrounds(built.network)
    res = target_from_lanes(built.network, ident.digest_places, bg, ident.digest_copies)
    assert res.hex == built.target.hex() and res.unique and res.verified


def test_injection_fires_only_on_the_target():
    built = build_net("md5", "owl", rounds=8, style="asap", pickle="never")
    ident = identify(built.network)
    bg = _backgrounds(built.network)
    bits = np.unpackbits(np.frombuffer(built.target, dtype=np.uint8), bitorder="little")
    assert np.all(inject(built.network, ident.digest_places, bg, bits, ident.digest_copies)[:, 0] == 1)
    bits[5] ^= 1
    assert np.all(inject(built.network, ident.digest_places, bg, bits, ident.digest_copies)[:, 0] == 0)


@pytest.fixture(scope="module")
def asap_md5():
    built = build_net("md5", "owl", style="asap", pickle="never")
    return built, identify(built.network)


def test_the_cut_is_the_comparator_alone_on_a_full_round_network(asap_md5):
    """Full-round asap MD5 shares digest neurons with the last steps' computation: the cone walks back
    from the output to the digest neurons and keeps the hash computation out of the cut."""
    built, ident = asap_md5
    assert ident.function == "md5" and ident.rounds is None and ident.digest_layer is None
    cone = comparator_cone(built.network, ident.digest_places, ident.digest_copies)
    assert sorted(j for _, _, j in cone.reads) == list(range(128)) and not cone.held
    # an XNOR per bit and a tree of 4-input ANDs carried to the output: hundreds of neurons, not the hash
    assert cone.size < 1000 and cone.start > len(built.network.layers) - 150
    res = target_from_lanes(built.network, ident.digest_places, _backgrounds(built.network), ident.digest_copies)
    assert res.hex == built.target.hex() and res.unique and res.verified
