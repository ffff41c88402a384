r"""Non-parametric morphology of galaxy stamps, batched: flux, r50, Gini, M20, C, A, S.

The definitions follow statmorph (Rodriguez-Gomez et al. 2019), itself following Lotz et al.
(2004) and Conselice (2003); the statistics are those used to judge generative galaxy models
by Lanusse et al. (2021) and Holzschuh et al. (2022). The ``batched`` engine evaluates them for
many stamps at once with NumPy; the ``statmorph`` engine calls statmorph per stamp (slow, the
reference). Documented simplifications of the batched engine (see ``docs/metrics.md``):

* apertures use a soft pixel edge (weight ``clip(R - r + 1/2, 0, 1)`` of the pixel-centre
  distance ``r``) instead of exact pixel-circle overlaps; radii are found on a 0.1 px grid (linear interpolation);
* the asymmetry centre is found by a coarse-to-fine grid search (steps 1/2, 1/4, 1/8 px) about
  the half-pixel centre that minimises the squared asymmetry (all centres at once by FFT), with
  bilinear rotation as statmorph, instead of a simplex; the aperture stays at that first centre;
* the background term of A comes from the known white-noise level ``noise_sigma``
  (``E|n - n'| = 2σ/√π``) instead of a sky box; that of S is measured like statmorph's, but on
  all pixels away from the source instead of a square sky box (white-noise value
  ``σ √(1 - 1/b²) / √(2π)`` if fewer than 64 such pixels).

Units: ``flux`` in counts, ``r50`` in pixels, the others dimensionless. A failed measurement is NaN.
"""

from __future__ import annotations

__all__ = [
    "MORPHOLOGY_PROPERTIES",
    "segment",
    "gini_coefficient",
    "measure_morphology",
    "morphology_batched",
    "morphology_statmorph",
]

import math
import warnings

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

#: Properties measured here, in output order.
MORPHOLOGY_PROPERTIES: tuple[str, ...] = (
    "flux",
    "r50",
    "gini",
    "m20",
    "concentration",
    "asymmetry",
    "smoothness",
)

ETA = 0.2  # Petrosian eta
ANNULUS = 1.0  # Petrosian annulus width (pixels)
GINI_FRACTION = 0.2  # smoothing sigma of the Gini segmap / elliptical Petrosian radius
CAS_EXTENT = 1.5  # aperture of C, A, S in Petrosian radii
CAS_FRACTION = 0.25  # inner radius and boxcar of S in Petrosian radii
FLUX_EXTENT = 2.0  # flux aperture in Petrosian radii
STEP = 0.1  # radius grid (pixels)


def _label_planes(mask: np.ndarray) -> tuple[np.ndarray, int]:
    r"""8-connected labels of each (H, W) plane of a (N, H, W) mask, unique over the stack."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    return ndi.label(mask, structure=structure)


def _keep_component(labels: np.ndarray, index_flat: np.ndarray) -> np.ndarray:
    r"""Keep, in each plane, the labelled component that contains pixel ``index_flat`` (flat per plane)."""
    n = labels.shape[0]
    flat = labels.reshape(n, -1)
    keep = flat[np.arange(n), index_flat]
    return (flat == keep[:, None]) & (keep[:, None] > 0)


def segment(images: np.ndarray, noise_sigma: np.ndarray, nsigma: float = 1.5) -> np.ndarray:
    r"""Segmentation maps (N, H, W) bool of the central source of each stamp.

    The stamp is smoothed by a Gaussian of 1 pixel, thresholded at ``nsigma`` times the noise of
    the smoothed image (``σ / (2 √π)`` for white noise of std σ counts; a noiseless stamp, σ = 0,
    uses 1e-3 of its peak), and the 8-connected component holding the brightest smoothed pixel
    within a quarter stamp of the centre is kept.
    """
    images = np.asarray(images, np.float64)
    n, h, w = images.shape
    smooth = ndi.gaussian_filter(images, sigma=(0, 1.0, 1.0), mode="constant")
    sigma = np.asarray(noise_sigma, np.float64).reshape(n)
    peak = smooth.reshape(n, -1).max(axis=1)
    thr = np.where(sigma > 0, nsigma * sigma / (2.0 * math.sqrt(math.pi)), 1e-3 * np.abs(peak))
    labels, _ = _label_planes(smooth > thr[:, None, None])
    central = np.full((h, w), -np.inf)
    central[h // 2 - h // 4 : h // 2 + h // 4 + 1, w // 2 - w // 4 : w // 2 + w // 4 + 1] = 0.0
    brightest = np.argmax((smooth + central).reshape(n, -1), axis=1)
    return _keep_component(labels, brightest).reshape(n, h, w)


class _Growth:
    r"""Soft-edged curves of growth ``F(R)`` (counts) and ``A(R)`` (pixels²) on a radius grid.

    ``dist`` is the (N, H, W) distance of each pixel centre from the aperture centre (circular
    radius or elliptical semi-major coordinate). The hard cumulative sums on a fine grid are
    averaged over a 1-pixel window, which equals summing each pixel with weight
    ``clip(R - r + 1/2, 0, 1)``.
    """

    def __init__(self, images: np.ndarray, dist: np.ndarray, rmax: float):
        n = images.shape[0]
        self.diag = float(math.hypot(*images.shape[1:]))
        sub = int(round(1.0 / STEP))
        self.k = int(math.ceil(rmax / STEP)) + 2 * sub + 2
        dist = np.nan_to_num(dist, nan=rmax, posinf=rmax)
        idx = np.minimum((dist / STEP).astype(np.int64), self.k - 1)
        flat = (idx + self.k * np.arange(n)[:, None, None]).ravel()
        hard_f = np.bincount(flat, images.ravel(), minlength=n * self.k).reshape(n, self.k)
        hard_a = np.bincount(flat, minlength=n * self.k).reshape(n, self.k).astype(np.float64)
        # hard cumulative at grid radius j*STEP: bins < j  (pad one leading zero)
        cf = np.concatenate([np.zeros((n, 1)), np.cumsum(hard_f, axis=1)], axis=1)
        ca = np.concatenate([np.zeros((n, 1)), np.cumsum(hard_a, axis=1)], axis=1)
        # soft(R) = mean of hard over [R - 1/2, R + 1/2]
        half = sub // 2
        self.f = self._window(cf, half)
        self.a = self._window(ca, half)
        self.r = np.arange(self.f.shape[1]) * STEP

    @staticmethod
    def _window(c: np.ndarray, half: int) -> np.ndarray:
        n, k = c.shape
        pad = np.concatenate([np.repeat(c[:, :1], half, axis=1), c, np.repeat(c[:, -1:], half + 1, axis=1)], axis=1)
        cs = np.concatenate([np.zeros((n, 1)), np.cumsum(pad, axis=1)], axis=1)
        width = 2 * half + 1
        return (cs[:, width:] - cs[:, :-width])[:, :k] / width

    def at(self, table: np.ndarray, radius: np.ndarray) -> np.ndarray:
        r"""Interpolate a (N, K) table at per-galaxy radii (N,) or (N, J)."""
        radius = np.asarray(radius, np.float64)
        squeeze = radius.ndim == 1
        radius = radius.reshape(len(table), -1)
        x = np.clip(radius / STEP, 0, table.shape[1] - 1.000001)
        i = x.astype(np.int64)
        t = x - i
        rows = np.arange(len(table))[:, None]
        out = table[rows, i] * (1 - t) + table[rows, i + 1] * t
        return out[:, 0] if squeeze else out

    def petrosian(self) -> tuple[np.ndarray, np.ndarray]:
        r"""Petrosian radius (pixels): first R ≥ 1 px where annulus / enclosed mean brightness = η.

        The annulus is [R - 1/2, R + 1/2] px; both means are taken in absolute value (statmorph).
        Returns the radius and a flag, True where no crossing was found (radius = the largest
        grid radius, as statmorph's flag 2) or where it falls below 1 px (radius = 1 px).
        """
        r = np.broadcast_to(self.r[None, :], self.f.shape)
        fo, fi = self.at(self.f, r + 0.5 * ANNULUS), self.at(self.f, np.maximum(r - 0.5 * ANNULUS, 0))
        ao, ai = self.at(self.a, r + 0.5 * ANNULUS), self.at(self.a, np.maximum(r - 0.5 * ANNULUS, 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.abs((fo - fi) / (ao - ai)) / np.abs(self.f / self.a) - ETA
        valid = (self.r >= ANNULUS) & (self.r + 0.5 * ANNULUS <= self.r[-1])
        g = np.where(valid[None, :], g, np.nan)
        # statmorph scans 100 radii from 1 px to the stamp diagonal for the first bracket of a
        # root, then solves inside it; a 1-pixel-wide annulus is noisy, so the coarse scan
        # matters: it skips dips narrower than the scan step.
        rows = np.arange(len(g))
        coarse = np.linspace(ANNULUS, self.diag, 100)
        jc = np.minimum(np.round(coarse / STEP).astype(np.int64), len(self.r) - 1)
        gc = g[:, jc]
        below_c = gc <= 0
        found = below_c.any(axis=1)
        first = np.argmax(below_c, axis=1)
        lo = np.where(first > 0, jc[np.maximum(first - 1, 0)], jc[0])
        hi = jc[first]
        idx = np.arange(len(self.r))[None, :]
        inside = (idx > lo[:, None]) & (idx <= hi[:, None]) & (g <= 0)
        j = np.where(inside.any(axis=1), np.argmax(inside, axis=1), hi)
        j0 = np.maximum(j - 1, lo)
        g0, g1 = g[rows, j0], g[rows, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where((j > j0) & np.isfinite(g0) & (g0 > g1), g0 / (g0 - g1), 1.0)
        rp = (j0 + np.clip(t, 0, 1) * (j - j0)) * STEP
        rp = np.where(found & (first > 0), rp, np.where(found, ANNULUS, self.diag))
        return np.maximum(rp, ANNULUS), ~found | (first == 0)

    def radius_at_fraction(self, fraction: float, r_total: np.ndarray) -> np.ndarray:
        r"""Radius (pixels) enclosing ``fraction`` of the flux within ``r_total`` (NaN if that flux ≤ 0)."""
        total = self.at(self.f, r_total)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.abs(self.f) / np.abs(total)[:, None]
        frac = np.where(self.r[None, :] <= np.asarray(r_total)[:, None], frac, np.inf)
        above = frac > fraction
        j = np.argmax(above, axis=1)
        j0 = np.maximum(j - 1, 0)
        rows = np.arange(len(frac))
        f0, f1 = frac[rows, j0], frac[rows, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(np.isfinite(f1) & (f1 > f0), (fraction - f0) / (f1 - f0), 1.0)
        r = (j0 + np.clip(t, 0, 1) * (j - j0)) * STEP
        return np.where((total != 0) & above.any(axis=1), r, np.nan)


def gini_coefficient(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    r"""Gini coefficient of |pixel values| within each mask (Lotz et al. 2004, eq. 6).

    :math:`G = \sum_i (2i - n - 1) |X_i| / ((n - 1) \sum_i |X_i|)` over the n masked pixels sorted
    in increasing order: 0 for a uniform image, 1 when one pixel holds all the light.
    Returns (N,) with NaN where n ≤ 1 or the sum is 0.
    """
    images = np.asarray(images, np.float64)
    n = images.shape[0]
    masks = np.asarray(masks, bool).reshape(n, -1)
    vals = np.sort(np.where(masks, np.abs(images.reshape(n, -1)), 0.0), axis=1)
    npix = masks.sum(axis=1)
    p = vals.shape[1]
    rank = np.arange(1, p + 1)[None, :] - (p - npix)[:, None]  # rank within the mask (1..n)
    tot = vals.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = ((2 * rank - npix[:, None] - 1) * vals).sum(axis=1) / ((npix - 1) * tot)
    return np.where((npix > 1) & (tot > 0), g, np.nan)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[:h, :w].astype(np.float32)
    return y, x


def _second_moments(img: np.ndarray, xc: np.ndarray, yc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Elongation a/b ≥ 1 and orientation (rad) of ``img`` about (xc, yc), as statmorph's covariance."""
    n, h, w = img.shape
    y, x = _grid(h, w)
    dx, dy = x[None] - xc[:, None, None], y[None] - yc[:, None, None]
    m0 = img.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        x2 = (img * dx * dx).sum(axis=(1, 2)) / m0
        y2 = (img * dy * dy).sum(axis=(1, 2)) / m0
        xy = (img * dx * dy).sum(axis=(1, 2)) / m0
    rho = 1.0 / 12.0
    for _ in range(100):
        thin = np.abs(x2 * y2 - xy**2) < rho**2
        if not thin.any():
            break
        x2 = x2 + thin * np.where(x2 >= 0, rho, -rho)
        y2 = y2 + thin * np.where(y2 >= 0, rho, -rho)
    tr, det = x2 + y2, x2 * y2 - xy**2
    disc = np.sqrt(np.maximum(tr**2 / 4 - det, 0))
    l1, l2 = tr / 2 + disc, tr / 2 - disc
    with np.errstate(divide="ignore", invalid="ignore"):
        elong = np.sqrt(np.abs(l1) / np.abs(l2))
    theta = 0.5 * np.arctan2(2 * xy, x2 - y2)
    ok = np.isfinite(elong) & np.isfinite(theta)
    return np.where(ok, np.clip(elong, 1.0, 100.0), 1.0), np.where(ok, theta, 0.0)


def _rotate180(
    images: np.ndarray, m_y: np.ndarray, m_x: np.ndarray, box: tuple[slice, slice] | None = None
) -> np.ndarray:
    r"""Rotate each stamp by 180° about (m_x / 2, m_y / 2) (integer m: exact), zero outside.

    The rotated stamp is the flipped stamp shifted by (m - (H - 1), m - (W - 1)) pixels: one
    gather of windows of the zero-padded flipped stack.
    """
    n, h, w = images.shape
    pad = np.zeros((n, 3 * h, 3 * w), images.dtype)
    pad[:, h : 2 * h, w : 2 * w] = images[:, ::-1, ::-1]
    win = np.lib.stride_tricks.sliding_window_view(pad, (h, w), axis=(1, 2))
    oy = np.clip(2 * h - 1 - m_y, 0, 2 * h)
    ox = np.clip(2 * w - 1 - m_x, 0, 2 * w)
    if box is None:
        return win[np.arange(n), oy, ox]
    return win[np.arange(n), oy, ox, box[0], box[1]]


def _asymmetry_search(
    img: np.ndarray, my0: np.ndarray, mx0: np.ndarray, radius: np.ndarray, sky: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""CAS asymmetry minimised over centres within ±1/2 px of (mx0 / 2, my0 / 2).

    The nine exact rotations about m = 2c and its neighbours (m ± 1) are tabulated; a rotation
    about any centre in between is their bilinear blend, as skimage's order-1 rotation used by
    statmorph. Coarse-to-fine 3 x 3 search with steps 1, 1/2, 1/4 in m units (1/2, 1/4, 1/8 px).
    Only the box holding every aperture of the group (radius + 2 px) is evaluated.

    Returns (asymmetry, y centre, x centre) in pixels.
    """
    n, h, w = img.shape
    rows = np.arange(n)
    pad = float(np.max(radius)) + 2.0
    y0 = int(max(0, math.floor(np.min(my0) / 2 - pad)))
    y1 = int(min(h, math.ceil(np.max(my0) / 2 + pad) + 1))
    x0 = int(max(0, math.floor(np.min(mx0) / 2 - pad)))
    x1 = int(min(w, math.ceil(np.max(mx0) / 2 + pad) + 1))
    box = (slice(y0, y1), slice(x0, x1))
    rots = np.stack(
        [np.stack([_rotate180(img, my0 + dy_, mx0 + dx_, box) for dx_ in (-1, 0, 1)]) for dy_ in (-1, 0, 1)]
    )  # (3, 3, N, h', w')
    crop = img[:, box[0], box[1]]
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dist = np.sqrt(
        (xx[None] - (mx0 / 2.0).astype(np.float32)[:, None, None]) ** 2
        + (yy[None] - (my0 / 2.0).astype(np.float32)[:, None, None]) ** 2
    )
    wgt = _soft_disc(dist, radius)
    den = (wgt * np.abs(crop)).sum(axis=(1, 2))
    area = wgt.sum(axis=(1, 2))

    def asym_at(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        iy = np.clip(np.floor(u).astype(np.int64), -1, 0)
        ix = np.clip(np.floor(v).astype(np.int64), -1, 0)
        fy, fx = (u - iy).astype(np.float32), (v - ix).astype(np.float32)
        iy, ix = iy + 1, ix + 1
        fy, fx = fy[:, None, None], fx[:, None, None]
        rot = (
            (1 - fy) * (1 - fx) * rots[iy, ix, rows]
            + (1 - fy) * fx * rots[iy, ix + 1, rows]
            + fy * (1 - fx) * rots[iy + 1, ix, rows]
            + fy * fx * rots[iy + 1, ix + 1, rows]
        )
        num = (wgt * np.abs(rot - crop)).sum(axis=(1, 2)) - area * sky
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / den, np.inf)

    bu, bv = np.zeros(n), np.zeros(n)
    best = asym_at(bu, bv)
    for step in (1.0, 0.5, 0.25):
        cu, cv = bu.copy(), bv.copy()
        for du in (-step, 0.0, step):
            for dv in (-step, 0.0, step):
                if du == 0.0 and dv == 0.0:
                    continue
                u, v = np.clip(cu + du, -1, 1), np.clip(cv + dv, -1, 1)
                val = asym_at(u, v)
                better = val < best
                best = np.where(better, val, best)
                bu, bv = np.where(better, u, bu), np.where(better, v, bv)
    return best, (my0 + bu) / 2.0, (mx0 + bv) / 2.0


def _soft_disc(dist: np.ndarray, radius: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(radius, np.float32)[:, None, None] - dist + np.float32(0.5), 0.0, 1.0)


def morphology_batched(
    images: np.ndarray,
    noise_sigma: np.ndarray,
    segmaps: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    r"""Morphology of (N, H, W) background-subtracted stamps in counts; see the module docstring.

    Arguments:
        images: Stamps (N, H, W), counts.
        noise_sigma: White-noise standard deviation per stamp (N,), counts (0 for noiseless).
        segmaps: Optional segmentation maps (N, H, W) bool; default :func:`segment`.

    Returns:
        One (N,) float64 array per name in :data:`MORPHOLOGY_PROPERTIES` (NaN where it failed).
    """
    img = np.asarray(images, np.float32)
    n, h, w = img.shape
    sigma = np.asarray(noise_sigma, np.float64).reshape(n)
    seg = segment(img, sigma) if segmaps is None else np.asarray(segmaps, bool)
    y, x = _grid(h, w)
    rows = np.arange(n)
    diag = math.hypot(h, w)

    # centroid of the segment (statmorph: _centroid)
    src = img * seg
    m0 = src.sum(axis=(1, 2))
    ok = (m0 > 0) & seg.any(axis=(1, 2))
    m0s = np.where(ok, m0, 1.0)
    xc = np.where(ok, (src * x).sum(axis=(1, 2)) / m0s, (w - 1) / 2)
    yc = np.where(ok, (src * y).sum(axis=(1, 2)) / m0s, (h - 1) / 2)
    xc, yc = np.clip(xc, 0, w - 1), np.clip(yc, 0, h - 1)

    def circ(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        dx2 = (x[0][None, None, :] - cx.astype(np.float32)[:, None, None]) ** 2
        dy2 = (y[:, 0][None, :, None] - cy.astype(np.float32)[:, None, None]) ** 2
        return np.sqrt(dx2 + dy2)

    # Petrosian radius about the centroid -> asymmetry aperture
    d_c = circ(xc, yc)
    rp_c, _ = _Growth(img, d_c, diag).petrosian()
    r_asym = CAS_EXTENT * rp_c

    # asymmetry centre: L2 asymmetry of the aperture-limited image for every half-pixel centre
    # at once (autocorrelation by FFT), restricted to within CAS_FRACTION * rp_c of the centroid,
    # then the L1 (CAS) asymmetry at the best centre and its 8 half-pixel neighbours.
    lim = img * _soft_disc(d_c, r_asym)
    spec = sfft.rfft2(lim, s=(2 * h, 2 * w), workers=-1)
    conv = sfft.irfft2(spec * spec, s=(2 * h, 2 * w), workers=-1)[:, : 2 * h - 1, : 2 * w - 1]  # index m = 2c
    my, mx = np.mgrid[: 2 * h - 1, : 2 * w - 1]
    near = np.hypot(mx[None] / 2 - xc[:, None, None], my[None] / 2 - yc[:, None, None]) <= np.maximum(
        CAS_FRACTION * rp_c, 1.0
    )[:, None, None]
    best = np.argmax(np.where(near, conv, -np.inf).reshape(n, -1), axis=1)
    by, bx = best // (2 * w - 1), best % (2 * w - 1)

    sky_asym = 2.0 * sigma / math.sqrt(math.pi)
    absimg = np.abs(img)

    my0 = np.clip(by, 1, 2 * h - 3)
    mx0 = np.clip(bx, 1, 2 * w - 3)
    asymmetry, ay, ax = np.empty(n), np.empty(n), np.empty(n)
    # galaxies of similar aperture together, each group cropped to the union of its apertures
    order = np.argsort(r_asym, kind="stable")
    for grp in np.array_split(order, max(1, n // 64)):
        if len(grp):
            asymmetry[grp], ay[grp], ax[grp] = _asymmetry_search(
                img[grp], my0[grp], mx0[grp], r_asym[grp], sky_asym[grp]
            )

    # Petrosian radius about the asymmetry centre: C, r50, flux, S
    d_a = circ(ax, ay)
    grow_a = _Growth(img, d_a, diag)
    rp, _ = grow_a.petrosian()
    r_tot = CAS_EXTENT * rp
    r20 = grow_a.radius_at_fraction(0.2, r_tot)
    r50 = grow_a.radius_at_fraction(0.5, r_tot)
    r80 = grow_a.radius_at_fraction(0.8, r_tot)
    with np.errstate(divide="ignore", invalid="ignore"):
        concentration = 5.0 * np.log10(r80 / r20)
    flux = np.abs(grow_a.at(grow_a.f, FLUX_EXTENT * rp))

    # smoothness: boxcar of int(0.25 rp) pixels, annulus [0.25 rp, 1.5 rp]
    box = (CAS_FRACTION * rp).astype(np.int64)
    smooth = img.copy()
    for b in np.unique(box):
        if b >= 2:
            sel = box == b
            smooth[sel] = ndi.uniform_filter(img[sel], size=(1, b, b))
    diff = np.maximum(img - smooth, 0.0)
    ann = _soft_disc(d_a, r_tot) - _soft_disc(d_a, CAS_FRACTION * rp)
    # background term of S, as statmorph's sky box: the mean of max(I - boxcar(I), 0) over pixels
    # away from the source (segment grown by the boxcar + 1 px); white-noise value from σ
    # (σ √(1 - 1/b²) / √(2π)) where fewer than 64 such pixels exist.
    bb = np.maximum(box, 1).astype(np.float64)
    sky_s = np.where(box >= 2, sigma * np.sqrt(1 - 1 / bb**2) / math.sqrt(2 * math.pi), 0.0)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    bkg = np.zeros_like(seg)
    for b in np.unique(box):
        sel = box == b
        bkg[sel] = ~ndi.binary_dilation(seg[sel], structure=structure, iterations=int(b) + 1)
    nbkg = bkg.sum(axis=(1, 2))
    emp = (diff * bkg).sum(axis=(1, 2)) / np.maximum(nbkg, 1)
    sky_s = np.where((nbkg >= 64) & (box >= 2) & (sigma > 0), emp, sky_s)
    ap_flux = (ann * img).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        smoothness = np.where(
            ap_flux > 0, ((ann * diff).sum(axis=(1, 2)) - ann.sum(axis=(1, 2)) * sky_s) / ap_flux, np.nan
        )

    # Gini segmap: smooth by 0.2 rp_ellip, threshold at the mean in the elliptical Petrosian annulus
    elong, theta = _second_moments(np.where(seg, img, 0.0), ax, ay)
    ct, st = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    dx0, dy0 = x[None] - ax[:, None, None], y[None] - ay[:, None, None]
    d_e = np.hypot(dx0 * ct + dy0 * st, (-dx0 * st + dy0 * ct) * elong[:, None, None])
    rpe, _ = _Growth(img, d_e, diag * min(float(np.max(elong)), 5.0)).petrosian()
    ky = np.fft.fftfreq(2 * h)[:, None]
    kx = np.fft.rfftfreq(2 * w)[None, :]
    s_g = GINI_FRACTION * rpe
    gauss = np.exp(-2 * math.pi**2 * s_g[:, None, None] ** 2 * (kx**2 + ky**2)[None])
    sm = sfft.irfft2(sfft.rfft2(img, s=(2 * h, 2 * w), workers=-1) * gauss.astype(np.float32), s=(2 * h, 2 * w), workers=-1)[:, :h, :w]
    dx1, dy1 = x[None] - xc[:, None, None], y[None] - yc[:, None, None]
    d_e1 = np.hypot(dx1 * ct + dy1 * st, (-dx1 * st + dy1 * ct) * elong[:, None, None])
    ring = np.abs(d_e1 - rpe[:, None, None]) <= 0.5 * ANNULUS
    with np.errstate(invalid="ignore"):
        thr = (sm * ring).sum(axis=(1, 2)) / np.maximum(ring.sum(axis=(1, 2)), 1)
    above = sm >= thr[:, None, None]
    labels, _ = _label_planes(above)
    gseg = _keep_component(labels, np.argmax(sm.reshape(n, -1), axis=1)).reshape(n, h, w)
    npix = gseg.sum(axis=(1, 2))
    gok = (npix > 1) & (npix < h * w)

    gini = np.where(gok, gini_coefficient(img, gseg), np.nan)

    gimg = np.where(gseg, img, 0.0)
    gm0 = gimg.sum(axis=(1, 2))
    gm0s = np.where(gm0 > 0, gm0, 1.0)
    gx, gy = (gimg * x).sum(axis=(1, 2)) / gm0s, (gimg * y).sum(axis=(1, 2)) / gm0s
    r2 = (x[None] - gx[:, None, None]) ** 2 + (y[None] - gy[:, None, None]) ** 2
    mtot = (gimg * r2).sum(axis=(1, 2))
    flat = np.sort(gimg.reshape(n, -1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.cumsum(flat, axis=1) / gm0s[:, None]
    j = np.argmax(frac >= 0.8, axis=1)
    thr20 = flat[rows, j]
    m20_2 = (np.where(gimg >= thr20[:, None, None], gimg, 0.0) * r2).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        m20 = np.log10(m20_2 / mtot)
    m20 = np.where(gok & (gm0 > 0) & (m20_2 > 0) & (mtot > 0), m20, np.nan)

    out = {
        "flux": flux,
        "r50": r50,
        "gini": gini,
        "m20": m20,
        "concentration": concentration,
        "asymmetry": np.where(np.isfinite(asymmetry), asymmetry, np.nan),
        "smoothness": smoothness,
    }
    for key, val in out.items():
        val = np.where(ok & np.isfinite(val), val, np.nan)
        out[key] = val.astype(np.float64)
    return out


def morphology_statmorph(
    images: np.ndarray,
    noise_sigma: np.ndarray,
    segmaps: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    r"""The same properties measured by statmorph, one stamp at a time (reference engine, slow).

    Only the properties listed in :data:`MORPHOLOGY_PROPERTIES` are evaluated (no Sérsic fit).
    ``flux`` is statmorph's ``flux_circ`` (counts), ``r50`` in pixels; a result of -99 or a
    flag of 4 becomes NaN.
    """
    import statmorph

    wanted = ("flux_circ", "r20", "r50", "r80", "gini", "m20", "concentration", "asymmetry", "smoothness")

    class _Subset(statmorph.SourceMorphology):
        def _calculate_morphology(self) -> None:  # noqa: D401 - statmorph hook
            for q in wanted:
                _ = self[q]

    img = np.asarray(images, np.float64)
    n = len(img)
    sigma = np.asarray(noise_sigma, np.float64).reshape(n)
    seg = segment(img, sigma) if segmaps is None else np.asarray(segmaps, bool)
    out = {k: np.full(n, np.nan) for k in MORPHOLOGY_PROPERTIES}
    for i in range(n):
        if not seg[i].any():
            continue
        weight = np.full(img[i].shape, sigma[i] if sigma[i] > 0 else 1e-3 * np.abs(img[i]).max())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                m = _Subset(img[i], seg[i].astype(np.int32), 1, weightmap=weight)
            except Exception:  # noqa: BLE001 - statmorph raises on pathological stamps
                continue
        if m.flag >= 4:
            continue
        vals = {
            "flux": m.flux_circ,
            "r50": m.r50,
            "gini": m.gini,
            "m20": m.m20,
            "concentration": m.concentration,
            "asymmetry": m.asymmetry,
            "smoothness": m.smoothness,
        }
        for key, v in vals.items():
            v = float(v)
            out[key][i] = v if (np.isfinite(v) and v != -99.0) else np.nan
    return out


def measure_morphology(
    images: np.ndarray,
    noise_sigma: np.ndarray,
    *,
    engine: str = "batched",
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    r"""Measure :data:`MORPHOLOGY_PROPERTIES` of (N, H, W) stamps in counts, in batches.

    Arguments:
        images: Stamps (N, H, W) in counts (one channel).
        noise_sigma: Noise standard deviation per stamp (N,) in counts.
        engine: ``batched`` (NumPy, fast) or ``statmorph`` (reference, slow).
        batch_size: Stamps per batch of the batched engine.
        progress: Show a tqdm bar on stderr.
    """
    if engine not in ("batched", "statmorph"):
        raise ValueError(f"config key 'metrics.morphology.engine': unknown engine '{engine}' (batched | statmorph)")
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"morphology needs (N, H, W) stamps, got shape {images.shape}")
    fn = morphology_batched if engine == "batched" else morphology_statmorph
    step = batch_size if engine == "batched" else 1
    from tqdm import tqdm

    parts: dict[str, list[np.ndarray]] = {k: [] for k in MORPHOLOGY_PROPERTIES}
    for start in tqdm(range(0, len(images), step), disable=not progress, desc=f"morphology ({engine})", leave=False):
        res = fn(images[start : start + step], np.asarray(noise_sigma)[start : start + step])
        for k in MORPHOLOGY_PROPERTIES:
            parts[k].append(res[k])
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
