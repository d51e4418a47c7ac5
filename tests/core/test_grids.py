import pytest
import torch

from fewstep import grids


@pytest.mark.parametrize("name", list(grids.GRIDS))
@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_grid_shape_and_endpoints(name, n):
    s = grids.get(name, n, 0.002, 80.0)
    assert s.dtype == torch.float64 and s.shape == (n + 1,)
    assert s[0] == 80.0 and s[-1] == 0
    if n > 1:  # vp_discrete (diffusers' spacing) stops short of sigma_min, at sigma(t_{n-1})
        assert s[-2] == pytest.approx(0.002) if name != "vp_discrete" else s[-2] > 0.002
        assert (s[1:] < s[:-1]).all()


def test_logsnr_uniform_and_karras_formula():
    s = grids.logsnr(6, 0.002, 80.0)[:-1]
    d = s.log().diff()
    torch.testing.assert_close(d, d[0].expand_as(d))
    k = grids.karras(6, 0.002, 80.0, rho=7.0)[:-1]
    i = torch.arange(6, dtype=torch.float64)
    ref = (80 ** (1 / 7) + i / 5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # Karras et al. (2022) Eq. 5
    torch.testing.assert_close(k, ref)
    # rho -> infinity approaches the uniform-logSNR grid
    torch.testing.assert_close(grids.karras(6, 0.002, 80.0, rho=1e5), grids.logsnr(6, 0.002, 80.0), rtol=1e-3, atol=0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="positive integer"):
        grids.logsnr(0, 0.002, 80.0)
    with pytest.raises(ValueError, match="smaller"):
        grids.karras(4, 80.0, 0.002)
    with pytest.raises(KeyError, match="known"):
        grids.get("linear", 4)
    with pytest.raises(ValueError, match="decreasing"):
        grids.from_values([1.0, 2.0, 0.0])
    assert grids.from_values([3.0, 1.0]).tolist() == [3.0, 1.0, 0.0]
