from __future__ import annotations

import galsim
import numpy as np
import pytest
import torch

from morphoflow.autoencoder.forward import chi2_fourier, chi2_pixel, fft_convolve, psf_rfft, sample_noise

torch.set_num_threads(1)


@pytest.mark.parametrize("size", [64, 63])
@pytest.mark.parametrize(
    "psf", [galsim.Gaussian(fwhm=0.25), galsim.Moffat(beta=3.0, fwhm=0.3)], ids=["gauss", "moffat"]
)
def test_fft_convolve_matches_galsim(size, psf):
    scale = 0.1
    gal = galsim.Gaussian(sigma=0.3, flux=100.0).shear(q=0.6, beta=0.4 * galsim.radians).shift(0.03, -0.05)
    t = gal.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    p = psf.drawImage(nx=size, ny=size, scale=scale, method="no_pixel", use_true_center=False).array
    ref = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    images = torch.tensor(np.stack([t, 2 * t]))[:, None].double()
    out = fft_convolve(images, torch.tensor(p)[None, None].double()).numpy()
    assert np.abs(out[0, 0] - ref).max() / ref.max() < 1e-4
    assert np.abs(out[1, 0] - 2 * ref).max() / ref.max() < 2e-4
    # precomputed PSF transform, per-galaxy PSFs and float32 give the same
    hat = psf_rfft(torch.tensor(p)[None, None].double())
    assert torch.allclose(fft_convolve(images, psf_hat=hat), torch.tensor(out))
    per = torch.tensor(p)[None, None].double().repeat(2, 1, 1, 1)
    assert torch.allclose(fft_convolve(images, per), torch.tensor(out))
    out32 = fft_convolve(images.float(), torch.tensor(p)[None, None].float())
    assert out32.dtype == torch.float32 and np.abs(out32[0, 0].numpy() - ref).max() / ref.max() < 1e-4


def test_no_wraparound():
    # a point source at the stamp's edge must not leak to the opposite edge
    img = torch.zeros(1, 1, 16, 16)
    img[0, 0, 8, 0] = 1.0
    psf = torch.zeros(1, 1, 16, 16)
    psf[0, 0, 8, 7:10] = 1 / 3  # horizontal 3-pixel smear centred at (8, 8)
    out = fft_convolve(img, psf)[0, 0]
    assert out[8, 0] == pytest.approx(1 / 3, abs=1e-6) and out[8, 1] == pytest.approx(1 / 3, abs=1e-6)
    assert abs(float(out[8, 15])) < 1e-6


def test_chi2_fourier_equals_pixel_for_white_noise():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 2, 20, 17, generator=g)
    sigma = torch.tensor([0.5, 1.0, 2.0])
    power = (sigma**2).view(3, 1, 1, 1).expand(3, 2, 20, 17 // 2 + 1)
    assert torch.allclose(chi2_fourier(r, power), chi2_pixel(r, sigma), rtol=1e-4)


def test_sample_noise_white_and_coloured():
    g = torch.Generator().manual_seed(1)
    n = sample_noise((400, 1, 32, 32), torch.full((400,), 2.5), None, g)
    assert n.shape == (400, 1, 32, 32)
    assert float(n.std()) == pytest.approx(2.5, rel=0.01)
    # coloured noise: a smooth anisotropic spectrum is recovered by the periodogram
    ky = torch.fft.fftfreq(32).view(32, 1)
    kx = torch.fft.rfftfreq(32).view(1, 17)
    power = (0.2 + 3.0 * torch.exp(-(kx**2) / 0.02 - (ky**2) / 0.05)).expand(1, 1, 32, 17)
    n = sample_noise((2000, 1, 32, 32), torch.ones(2000), power, torch.Generator().manual_seed(2))
    est = torch.fft.rfft2(n).abs().square().mean(0, keepdim=True) / (32 * 32)
    assert torch.allclose(est, power, rtol=0.15)
    assert float((est / power).mean()) == pytest.approx(1.0, abs=0.01)
    # the Fourier chi2 of such noise is ~1 per pixel
    chi2 = chi2_fourier(n, power) / (32 * 32)
    assert float(chi2.mean()) == pytest.approx(1.0, abs=0.01)
    # same generator seed -> same noise
    again = sample_noise((2000, 1, 32, 32), torch.ones(2000), power, torch.Generator().manual_seed(2))
    assert torch.equal(n, again)
