r"""The detail level of the two-level autoencoder: a spatial latent map that carries small-scale structure.

The global latent :math:`z` (the flow's target) decodes to a smooth galaxy: coarse-grid logits :math:`L(z)`
of shape (B, C·p², H/p, W/p), one cell per p × p pixels (p = ``autoencoder.patch``). The detail latent
:math:`d` is a map of ``channels`` numbers per cell; the galaxy is

.. math:: g = \mathrm{softplus}(\mathrm{shuffle}(L + \Delta(d, L)))

so the detail level adds star-forming clumps and other structure that a 16-number vector cannot place.

* posterior :math:`q(d \mid x, L)`: a diagonal Gaussian per cell, from the observed stamp and the smooth galaxy;
* prior :math:`p(d \mid L)`: per cell a mixture of ``components`` diagonal Gaussians (one component per cell
  for all channels), whose weights, means and variances come from the smooth galaxy. Clumps are sparse:
  most cells hold nothing, a few a bright knot, and one Gaussian per cell cannot hold both, so
  samples of a Gaussian prior decode to faint texture instead of knots (measured: docs/substructure.md).
  The mixture lets "no detail" and "a knot" be separate components;
* :math:`\Delta`: a small residual convolutional network on :math:`d` and the smooth galaxy's features.

Cells are independent given :math:`L`, as knots drawn independently from the disk profile are.
The features of the smooth galaxy enter as :math:`\mathrm{asinh}` of its image on the coarse grid (the raw
logits reach −10 in the outskirts and would drown the detail code).

References:
    | Vahdat & Kautz (2020). NVAE: A Deep Hierarchical Variational Autoencoder (conditional priors per level).
    | Tomczak & Welling (2018). VAE with a VampPrior (learned, multi-modal priors against prior holes).

Example:
    >>> import torch
    >>> level = DetailLevel(logit_channels=16, patch=4, channels=4, width=16, blocks=1, components=3)
    >>> logits = torch.randn(2, 16, 8, 8)
    >>> u, eps = torch.rand(2, 1, 8, 8), torch.randn(2, 4, 8, 8)
    >>> level.refine(logits, level.sample_prior(logits, u, eps)).shape
    torch.Size([2, 16, 8, 8])
"""

from __future__ import annotations

__all__ = ["DetailLevel"]

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ResBlock, _asinh

_LOG_2PI = math.log(2 * math.pi)


def _stack(cin: int, cout: int, width: int, blocks: int) -> nn.Sequential:
    r"""3×3 conv in, ``blocks`` residual blocks, SiLU, 3×3 conv out (same grid)."""

    layers: list[nn.Module] = [nn.Conv2d(cin, width, 3, padding=1)]
    layers += [ResBlock(width) for _ in range(blocks)]
    layers += [nn.SiLU(), nn.Conv2d(width, cout, 3, padding=1)]
    return nn.Sequential(*layers)


class DetailLevel(nn.Module):
    r"""Posterior, mixture prior and decoder of the detail map (module docstring).

    Arguments:
        logit_channels: Channels of the coarse-grid logits, C·p² (C image channels, p the patch factor).
        patch: The decoder's depth-to-space factor p (pixels per cell side).
        channels: Detail numbers per cell.
        width: Channels of the three small networks.
        blocks: Residual blocks of each network.
        components: Mixture components of the prior per cell.
    """

    def __init__(
        self, logit_channels: int, patch: int, channels: int = 4, width: int = 64, blocks: int = 2, components: int = 3
    ):
        super().__init__()
        self.patch, self.channels, self.components = int(patch), int(channels), int(components)
        n, c, k = int(logit_channels), self.channels, self.components
        self.encoder = _stack(2 * n, 2 * c, width, blocks)
        self.prior_net = _stack(n, k * (2 * c + 1), width, blocks)
        self.decoder = _stack(n + c, n, width, blocks)
        with torch.no_grad():
            # start as the smooth model (Δ = 0), with a near-deterministic posterior and a standard prior whose
            # components sit apart (means 0, 2, 4, ...) so that they can specialise
            for conv in (self.decoder[-1], self.prior_net[-1]):
                conv.weight.zero_()
                conv.bias.zero_()
            self.encoder[-1].bias[c:] = -4.0
            self.prior_net[-1].bias[k : k + k * c] = torch.arange(k).repeat_interleave(c).float() * 2.0

    def features(self, logits: Tensor) -> Tensor:
        r"""The smooth galaxy as asinh of its (normalised) image, on the coarse grid (B, C·p², h, w)."""

        image = F.softplus(F.pixel_shuffle(logits, self.patch) if self.patch > 1 else logits)
        x = _asinh(image)
        return F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x

    def posterior(self, x: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        r"""Mean and log-variance (B, channels, h, w) of :math:`q(d \mid x, L)`; ``x``: normalised stamps (B, C, H, W)."""

        xs = _asinh(x)
        xs = F.pixel_unshuffle(xs, self.patch) if self.patch > 1 else xs
        mu, logvar = self.encoder(torch.cat([xs, self.features(logits)], 1)).chunk(2, 1)
        return mu, logvar.clamp(-12.0, 6.0)

    def prior(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""Mixture prior per cell: log-weights (B, K, h, w), means and log-variances (B, K, channels, h, w)."""

        out = self.prior_net(self.features(logits))
        b, _, h, w = out.shape
        k, c = self.components, self.channels
        mu = out[:, k : k + k * c].reshape(b, k, c, h, w)
        logvar = out[:, k + k * c :].reshape(b, k, c, h, w).clamp(-12.0, 6.0)
        return torch.log_softmax(out[:, :k], 1), mu, logvar

    def log_prior(self, d: Tensor, logits: Tensor) -> Tensor:
        r"""Log density (B,) of detail maps ``d`` (B, channels, h, w) under :math:`p(d \mid L)`, in nats."""

        log_w, mu, logvar = self.prior(logits)
        ll = -0.5 * ((d.unsqueeze(1) - mu).square() / logvar.exp() + logvar + _LOG_2PI).sum(2)
        return torch.logsumexp(log_w + ll, 1).flatten(1).sum(1)

    def sample_prior(self, logits: Tensor, u: Tensor, eps: Tensor) -> Tensor:
        r"""Detail maps drawn from :math:`p(d \mid L)` with given randomness.

        Arguments:
            logits: Smooth coarse-grid logits (B, C·p², h, w).
            u: Uniforms (B, 1, h, w) that pick each cell's component.
            eps: Standard normals (B, channels, h, w).
        """

        log_w, mu, logvar = self.prior(logits)
        b, k, c, h, w = mu.shape
        pick = (u > log_w.exp().cumsum(1)).sum(1).clamp_max(k - 1)  # (B, h, w)
        index = pick.view(b, 1, 1, h, w).expand(b, 1, c, h, w)
        mean, lv = mu.gather(1, index).squeeze(1), logvar.gather(1, index).squeeze(1)
        return mean + eps * (0.5 * lv).exp()

    def refine(self, logits: Tensor, d: Tensor) -> Tensor:
        r"""Coarse-grid logits with the detail added, :math:`L + \Delta(d, L)`."""

        return logits + self.decoder(torch.cat([self.features(logits), d], 1))

    def noise_shapes(self, n: int, grid: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        r"""Shapes of ``u`` and ``eps`` of :meth:`sample_prior` for ``n`` galaxies on the coarse ``grid`` (h, w)."""

        return (n, 1, *grid), (n, self.channels, *grid)
