import numpy as np
import pytest
import scipy.sparse as sp

from model.ease import _symmetric_from_upper, ease_from_gram, ease_weights, gram_matrix


@pytest.mark.parametrize("n", [1, 5, 511, 512, 513, 1100])
def test_symmetric_from_upper_mirrors_the_upper_triangle(n: int) -> None:
    a = np.random.default_rng(n).random((n, n))
    expected = np.triu(a) + np.triu(a, 1).T
    assert np.array_equal(_symmetric_from_upper(a.copy()), expected)


def test_ease_is_the_closed_form() -> None:
    x = sp.random(200, 700, density=0.05, random_state=2, format="csr")
    x.data[:] = 1.0
    precision = np.linalg.inv(x.T @ x + 15.0 * np.eye(700))
    expected = precision / -np.diag(precision)
    np.fill_diagonal(expected, 0.0)
    assert np.allclose(ease_weights(x, 15.0), expected, atol=1e-12)
    gram = gram_matrix(x)
    before = gram.copy()
    assert np.array_equal(ease_from_gram(gram, 15.0), ease_weights(x, 15.0))
    assert np.array_equal(gram, before)  # one Gram serves every l2
