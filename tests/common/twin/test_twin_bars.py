"""``bars.same_bits``: the bits of two bar arrays compared as ``tobytes`` would, without the copies."""

import numpy as np

from common.twin.bars import same_bits


def test_same_bits_is_tobytes_equality():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(350, 6))
    a[3, 2] = np.nan
    b = a.copy()
    assert same_bits(a, b) and same_bits(a[1:], b[1:])  # NaN equals itself, bit for bit
    b[7, 4] = np.nextafter(b[7, 4], 2.0)
    assert not same_bits(a, b) and same_bits(a[8:], b[8:])
    z = np.zeros((2, 6))
    assert not same_bits(z, -z)  # -0.0 is not 0.0 here
    assert not same_bits(a[1:], b[:-2])  # other shapes
    assert same_bits(a[:, ::2], a.copy()[:, ::2]) and not same_bits(a[:, ::2], a[:, 1::2])  # strided: tobytes
