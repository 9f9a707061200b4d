"""Comparator read-out: hand-built hat comparators (several conventions) and a zoo MD5 net."""

import hashlib

import numpy as np
import pytest

from dormant.net.identify.comparator import ComparatorError, read_target, target_bits
from dormant.net.load.network import Layer, Network
from dormant.net.logic.simulate import forward


def hat_tail(target: bytes, *, flip: bool = False, shuffle: int | None = None, extra_carry: int | None = None) -> Network:
    """bits (8 per byte, LSB first) -> hats -> AND of all bytes.

    ``flip`` writes each hat as relu(t+1 - v) style (negated weights and biases);
    ``shuffle`` permutes the hat neurons; ``extra_carry`` adds a ninth lane of weight 1 to that
    byte (carry-save form: the byte value is the sum of both).
    """
    n = len(target)
    lanes = 8 * n + (1 if extra_carry is not None else 0)
    hats = np.zeros((3 * n, lanes))
    hb = np.zeros(3 * n)
    fw = np.zeros((1, 3 * n))
    for j, t in enumerate(target):
        for k, off in enumerate((-1, 0, 1)):  # relu(v - t + 1), relu(v - t), relu(v - t - 1)
            row = 3 * j + k
            hats[row, 8 * j : 8 * j + 8] = 2.0 ** np.arange(8)
            if extra_carry == j:
                hats[row, -1] = 1
            hb[row] = -(t + off)
            if flip:  # relu(t + off - v) has the same hat shape mirrored: fires at v == t as well
                hats[row] *= -1
                hb[row] *= -1
            fw[0, row] = (1, -2, 1)[k]
    if shuffle is not None:
        perm = np.random.default_rng(shuffle).permutation(3 * n)
        hats, hb, fw = hats[perm], hb[perm], fw[:, perm]
    return Network([Layer(hats, hb), Layer(fw, np.array([-(n - 1.0)]))])


def bits_of(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little").astype(float)


@pytest.mark.parametrize("flip,shuffle", [(False, None), (True, None), (False, 3)])
def test_read_target_from_hats(flip, shuffle):
    target = bytes(np.random.default_rng(1).integers(0, 256, 16).tolist())
    net = hat_tail(target, flip=flip, shuffle=shuffle)
    t = read_target(net)
    assert t.conjunctive and len(t.groups) == 16
    got = {tuple(g.support): g.value for g in t.groups}
    assert [got[tuple(range(8 * j, 8 * j + 8))] for j in range(16)] == list(target)
    if shuffle is None:
        assert t.hex == target.hex()
    # the read-out is right: the network fires on the target's bits and not on a neighbour
    bits = target_bits(t)
    x = np.array([bits[i] for i in range(8 * 16)], dtype=float)
    assert forward(net, x)[0][0] == 1
    x[5] = 1 - x[5]
    assert forward(net, x)[0][0] == 0


def test_carry_save_byte_is_read_by_value():
    target = bytes([7, 200, 33])
    net = hat_tail(target, extra_carry=1)
    t = read_target(net)
    g = t.groups[1]
    assert g.value == 200 and g.firing_assignments == 2 and g.bits is None
    assert t.hex == target.hex()


def test_not_a_comparator():
    net = Network([Layer(np.eye(3), np.zeros(3)), Layer(np.eye(2, 3), np.zeros(2))])
    with pytest.raises(ComparatorError, match="outputs"):
        read_target(net)


def test_zoo_md5_target(md5_net):
    t = read_target(md5_net.network)
    assert t.hex == hashlib.md5(b"bitter lesson").hexdigest() == "c7ef65233c40aa32c2b9ace37595fa7c"
    assert t.conjunctive and not t.notes
    # byte j of the digest is read from lanes 8j..8j+7, bit k (LSB first) from lane 8j+k
    assert [g.support for g in t.groups] == [list(range(8 * j, 8 * j + 8)) for j in range(16)]
    assert all(g.lane_weights == [2.0**k for k in range(8)] for g in t.groups)


def test_sum_of_two_bytes_reads_modulo_256():
    # one group whose hats read x + y over 16 lanes (two bytes, weights 1..128 each), t = 300
    t = 300
    hats = np.zeros((3, 16))
    hats[:, :8] = hats[:, 8:] = 2.0 ** np.arange(8)
    net = Network([Layer(hats, -np.array([t - 1.0, t, t + 1.0])), Layer(np.array([[1.0, -2.0, 1.0]]), np.array([0.0]))])
    target = read_target(net)
    g = target.groups[0]
    assert g.value == 300 and g.firing_assignments > 1 and g.bits is None
    assert target.hex == "2c" and any("modulo 256" in n for n in target.notes)
