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
  (``E|n - n'| = 2σ/√π``) instead of a sky box;
* the Gini segmap's Gaussian smoothing (``gaussian_filter``, reflect, 4σ) and the boxcar of S
  run on the whole stamp instead of statmorph's cutout.

The background term of S is statmorph's own: the mean of ``max(B - boxcar(B), 0)`` over its sky
box B, the first square of 32 (else 16, 8, 4, 2) px free of segment pixels in statmorph's cutout
(none: no background term); see :func:`_skybox_smoothness`.

Units: ``flux`` in counts, ``r50`` in pixels, the others dimensionless. A failed measurement is NaN.
"""

from __future__ import annotations

__all__ = [
    "MORPHOLOGY_PROPERTIES",
    "gini_coefficient",
    "measure_morphology",
    "morphology_batched",
    "morphology_statmorph",
    "segment",
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
    y0, x0 = h // 2 - h // 4, w // 2 - w // 4
    central = smooth[:, y0 : h // 2 + h // 4 + 1, x0 : w // 2 + w // 4 + 1]
    first = np.argmax(central.reshape(n, -1), axis=1)
    brightest = (y0 + first // central.shape[2]) * w + x0 + first % central.shape[2]
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
        sub = round(1.0 / STEP)
        self.k = math.ceil(rmax / STEP) + 2 * sub + 2
        # bin of each pixel (NaN, inf and beyond the table: the last bin)
        idx = np.fmin(dist / STEP, self.k - 1).astype(np.int64)
        idx += self.k * np.arange(n)[:, None, None]
        flat = idx.ravel()
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

    @staticmethod
    def _shift(table: np.ndarray, s: int) -> np.ndarray:
        r"""``table`` at grid index j + s (clamped to the first / last entry)."""
        if s >= 0:
            return np.concatenate([table[:, s:], np.repeat(table[:, -1:], s, axis=1)], axis=1)
        return np.concatenate([np.repeat(table[:, :1], -s, axis=1), table[:, :s]], axis=1)

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
        # the annulus edges R ± 1/2 lie on the grid: shifted tables, no interpolation
        s = round(0.5 * ANNULUS / STEP)
        fo, fi = self._shift(self.f, s), self._shift(self.f, -s)
        ao, ai = self._shift(self.a, s), self._shift(self.a, -s)
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
    images = np.asarray(images)
    images = images if images.dtype == np.float32 else images.astype(np.float64)
    n = images.shape[0]
    masks = np.asarray(masks, bool).reshape(n, -1)
    vals = np.sort(np.where(masks, np.abs(images.reshape(n, -1)), 0), axis=1)
    npix = masks.sum(axis=1)
    p = vals.shape[1]
    # sum_i (2 i - n - 1) X_i with i = position - (p - n): the masked values are the last n
    tot = vals.sum(axis=1, dtype=np.float64)
    ranked = vals @ np.arange(1, p + 1, dtype=vals.dtype) - (p - npix) * tot
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (2 * ranked - (npix + 1) * tot) / ((npix - 1) * tot)
    return np.where((npix > 1) & (tot > 0), g, np.nan)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[:h, :w].astype(np.float32)
    return y, x


def _raw_moments(img: np.ndarray) -> tuple[np.ndarray, ...]:
    r"""Sums of I, I x, I y, I x², I y², I x y per (H, W) plane (float64), by separable products."""
    _, h, w = img.shape
    x, y = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    img = img.astype(np.float64)
    col = img.sum(axis=1)  # (N, W)
    row = img.sum(axis=2)  # (N, H)
    rx = img @ x  # (N, H): sum_x I x per row
    return col.sum(axis=1), col @ x, row @ y, col @ (x * x), row @ (y * y), rx @ y


def _second_moments(img: np.ndarray, xc: np.ndarray, yc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Elongation a/b ≥ 1 and orientation (rad) of ``img`` about (xc, yc), as statmorph's covariance."""
    m0, mx, my, mxx, myy, mxy = _raw_moments(img)
    xc, yc = np.asarray(xc, np.float64), np.asarray(yc, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        x2 = (mxx - 2 * xc * mx + xc**2 * m0) / m0
        y2 = (myy - 2 * yc * my + yc**2 * m0) / m0
        xy = (mxy - xc * my - yc * mx + xc * yc * m0) / m0
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


def _asymmetry_search(
    img: np.ndarray, my0: np.ndarray, mx0: np.ndarray, radius: np.ndarray, sky: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""CAS asymmetry minimised over centres within ±1/2 px of (mx0 / 2, my0 / 2).

    The nine exact rotations about m = 2c and its neighbours (m ± 1) are tabulated; a rotation
    about any centre in between is their bilinear blend, as skimage's order-1 rotation used by
    statmorph. Coarse-to-fine 3 x 3 search with steps 1, 1/2, 1/4 in m units (1/2, 1/4, 1/8 px):
    the 8 candidates of a step are blended and scored at once (batched matrix products).
    Only the box holding every aperture of the group (radius + 2 px) is evaluated.

    Returns (asymmetry, y centre, x centre) in pixels.
    """
    n, h, w = img.shape
    pad = float(np.max(radius)) + 2.0
    y0 = int(max(0, math.floor(np.min(my0) / 2 - pad)))
    y1 = int(min(h, math.ceil(np.max(my0) / 2 + pad) + 1))
    x0 = int(max(0, math.floor(np.min(mx0) / 2 - pad)))
    x1 = int(min(w, math.ceil(np.max(mx0) / 2 + pad) + 1))
    hb, wb = y1 - y0, x1 - x0
    # rotation about m / 2: rot[y, x] = img[m_y - y, m_x - x] (zero outside). One flipped crop
    # C[i, j] = img[m_y + 1 - y0 - i, m_x + 1 - x0 - j] of (hb + 2, wb + 2) holds all 9 rotations
    # about m + d: rot_d = C[1 - d_y : 1 - d_y + hb, 1 - d_x : 1 - d_x + wb].
    iy = (my0 + 1 - y0)[:, None] - np.arange(hb + 2)[None, :]
    ix = (mx0 + 1 - x0)[:, None] - np.arange(wb + 2)[None, :]
    vy, vx = (iy >= 0) & (iy < h), (ix >= 0) & (ix < w)
    flip = img[np.arange(n)[:, None, None], np.clip(iy, 0, h - 1)[:, :, None], np.clip(ix, 0, w - 1)[:, None, :]]
    flip *= vy[:, :, None] & vx[:, None, :]
    shifts = np.array([-1, 0, 1])
    rots = np.empty((n, 9, hb, wb), img.dtype)
    for a_, dy_ in enumerate(shifts):
        for b_, dx_ in enumerate(shifts):
            rots[:, 3 * a_ + b_] = flip[:, 1 - dy_ : 1 - dy_ + hb, 1 - dx_ : 1 - dx_ + wb]
    rots = rots.reshape(n, 9, hb * wb)  # index 3 * (d_y + 1) + (d_x + 1)
    crop = img[:, y0:y1, x0:x1].reshape(n, 1, hb * wb)
    yg, xg = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dist = np.sqrt(
        (xg[None] - (mx0 / 2.0).astype(np.float32)[:, None, None]) ** 2
        + (yg[None] - (my0 / 2.0).astype(np.float32)[:, None, None]) ** 2
    )
    wgt = _soft_disc(dist, radius).reshape(n, hb * wb, 1)
    den = (np.abs(crop) @ wgt)[:, 0, 0]
    area = wgt.sum(axis=(1, 2))

    def blend_weights(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        r"""(N, C, 9) bilinear weights of the 9 rotations for shifts (u, v) in [-1, 1] (N, C)."""
        wy = np.maximum(1 - np.abs(u[..., None] - shifts), 0)  # (N, C, 3)
        wx = np.maximum(1 - np.abs(v[..., None] - shifts), 0)
        return (wy[..., :, None] * wx[..., None, :]).reshape(*u.shape, 9).astype(np.float32)

    def asym_at(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        rot = blend_weights(u, v) @ rots  # (N, C, P)
        np.subtract(rot, crop, out=rot)
        np.abs(rot, out=rot)
        num = (rot @ wgt)[..., 0] - area[:, None] * sky[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den[:, None] > 0, num / den[:, None], np.inf)

    bu, bv = np.zeros(n), np.zeros(n)
    best = asym_at(bu[:, None], bv[:, None])[:, 0]
    offsets = [(du, dv) for du in (-1, 0, 1) for dv in (-1, 0, 1) if (du, dv) != (0, 0)]
    du = np.array([o[0] for o in offsets], np.float64)
    dv = np.array([o[1] for o in offsets], np.float64)
    for step in (1.0, 0.5, 0.25):
        u = np.clip(bu[:, None] + step * du, -1, 1)
        v = np.clip(bv[:, None] + step * dv, -1, 1)
        val = asym_at(u, v)
        k = np.argmin(val, axis=1)
        vk = val[np.arange(n), k]
        better = vk < best
        best = np.where(better, vk, best)
        bu = np.where(better, u[np.arange(n), k], bu)
        bv = np.where(better, v[np.arange(n), k], bv)
    return best, (my0 + bu) / 2.0, (mx0 + bv) / 2.0


def _gaussian_matrix(size: int, sigma: np.ndarray) -> np.ndarray:
    r"""(N, size, size) float32 matrices G with ``G @ v`` = ``ndi.gaussian_filter1d(v, sigma)``
    (mode ``reflect``, truncated at 4 sigma), one per sigma (N,)."""
    sigma = np.asarray(sigma, np.float64)
    n = len(sigma)
    rad = (4.0 * np.where(np.isfinite(sigma), sigma, 0.0) + 0.5).astype(np.int64)
    kmax = int(rad.max()) if n else 0
    k = np.arange(-kmax, kmax + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.exp(-0.5 * k[None, :] ** 2 / sigma[:, None] ** 2)
    phi = np.where(np.abs(k)[None, :] <= rad[:, None], phi, 0.0)
    phi[rad == 0] = k == 0
    phi /= phi.sum(axis=1, keepdims=True)
    j = np.arange(size)[:, None] + k[None, :]  # (size, K) source index before reflection
    j = np.mod(j, 2 * size)
    j = np.where(j >= size, 2 * size - 1 - j, j)
    flat = (np.arange(n)[:, None, None] * size + np.arange(size)[None, :, None]) * size + j[None]
    wgt = np.broadcast_to(phi[:, None, :], flat.shape)
    return np.bincount(flat.ravel(), wgt.ravel(), minlength=n * size * size).reshape(n, size, size).astype(np.float32)


def _gaussian_smooth(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    r"""``ndi.gaussian_filter(img[i], sigma[i])`` of each (H, W) plane (reflect, 4 sigma), as two
    batched matrix products."""
    _, h, w = img.shape
    gy = _gaussian_matrix(h, sigma)
    gx = gy if w == h else _gaussian_matrix(w, sigma)
    return gy @ img.astype(np.float32) @ gx.transpose(0, 2, 1)


CUTOUT_EXTENT = 2.5  # statmorph's cutout: this many times the segment's bounding box
MIN_CUTOUT = 48  # statmorph's minimum cutout size (pixels)
SKYBOX_SIZES = (32, 16, 8, 4, 2)  # statmorph's sky box, halved until one fits


def _skybox_smoothness(img: np.ndarray, seg: np.ndarray, boxcar: np.ndarray) -> np.ndarray:
    r"""Background term of S as statmorph's ``_sky_smoothness``: the mean of
    ``max(B - boxcar(B), 0)`` over its sky box B (boxcar ``reflect`` inside the box).

    The sky box is statmorph's ``_slice_skybox``: the first (row-major) square of 32 px, else
    16, 8, 4, 2, free of segment pixels inside statmorph's cutout (a square of 2.5 times the
    segment's bounding box, at least 48 px, clipped to the stamp). NaN where there is none.
    """
    n, h, w = seg.shape
    out = np.full(n, np.nan)
    rows_any, cols_any = seg.any(axis=2), seg.any(axis=1)
    has = rows_any.any(axis=1)
    ymin, ymax = np.argmax(rows_any, axis=1), h - 1 - np.argmax(rows_any[:, ::-1], axis=1)
    xmin, xmax = np.argmax(cols_any, axis=1), w - 1 - np.argmax(cols_any[:, ::-1], axis=1)
    dy, dx = ymax + 1 - ymin, xmax + 1 - xmin
    cy, cx = ymin + dy // 2, xmin + dx // 2
    half = np.maximum((np.maximum(dx, dy) * CUTOUT_EXTENT / 2.0).astype(np.int64), MIN_CUTOUT // 2)
    cy0, cy1 = np.maximum(0, cy - half), np.minimum(h, cy + half)
    cx0, cx1 = np.maximum(0, cx - half), np.minimum(w, cx + half)
    itype = np.int16 if h * w < 2**15 else np.int64
    integral = np.zeros((n, h + 1, w + 1), itype)
    np.cumsum(seg, axis=1, dtype=itype, out=integral[:, 1:, 1:])
    np.cumsum(integral[:, 1:, 1:], axis=2, out=integral[:, 1:, 1:])
    found = ~has
    for size in SKYBOX_SIZES:
        if size > min(h, w):
            continue
        cnt = (
            integral[:, size:, size:]
            - integral[:, :-size, size:]
            - integral[:, size:, :-size]
            + integral[:, :-size, :-size]
        )  # (N, h - size + 1, w - size + 1), by top-left corner
        ty, tx = np.arange(h - size + 1), np.arange(w - size + 1)
        ok_y = (ty[None, :] >= cy0[:, None]) & (ty[None, :] < (cy1 - size)[:, None])
        ok_x = (tx[None, :] >= cx0[:, None]) & (tx[None, :] < (cx1 - size)[:, None])
        free = ((cnt == 0) & ok_y[:, :, None] & ok_x[:, None, :]).reshape(n, -1)
        new = free.any(axis=1) & ~found
        if not new.any():
            continue
        first = np.argmax(free, axis=1)
        by, bx = first // len(tx), first % len(tx)
        idx = np.flatnonzero(new)
        boxes = img[
            idx[:, None, None],
            by[idx, None, None] + np.arange(size)[None, :, None],
            bx[idx, None, None] + np.arange(size)[None, None, :],
        ].astype(np.float64)
        bc = boxcar[idx]
        sky = np.zeros(len(idx))
        for b in np.unique(bc):
            sel = bc == b
            if b >= 2:
                bkg = boxes[sel]
                diff = np.maximum(bkg - ndi.uniform_filter(bkg, size=(1, int(b), int(b))), 0.0)
                sky[sel] = diff.mean(axis=(1, 2))
        out[idx] = sky
        found |= new
        if found.all():
            break
    return out


_FFT_SIZES = (16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)


def _autocorrelation_window(
    lim: np.ndarray,
    xc: np.ndarray,
    yc: np.ndarray,
    support: np.ndarray,
    reach: np.ndarray,
    myw: np.ndarray,
    mxw: np.ndarray,
) -> np.ndarray:
    r"""Linear autocorrelation ``C[m] = sum_p lim[p] lim[m - p]`` of each plane at m = (myw, mxw).

    ``lim[i]`` vanishes farther than ``support[i]`` px (per axis) from (xc, yc), and only
    ``|m - 2 c| <= reach[i]`` is needed, so a P x P crop about the centre with P > 2 support +
    reach (per galaxy, from a fixed list: batch independent) gives C without wrap-around by a
    circular FFT; values at other m are undefined.
    """
    n, h, w = lim.shape
    cap = sfft.next_fast_len(2 * max(h, w), real=True)
    need = 2 * np.asarray(support) + np.asarray(reach) + 2
    sizes = np.array((*_FFT_SIZES, cap))
    psize = np.minimum(sizes[np.searchsorted(sizes, need)], cap) if n else np.zeros(0, np.int64)
    out = np.empty((n, myw.shape[1], mxw.shape[1]), np.float32)
    for p in np.unique(psize):
        p = int(p)
        idx = np.flatnonzero(psize == p)
        oy = np.round(yc[idx]).astype(np.int64) - p // 2
        ox = np.round(xc[idx]).astype(np.int64) - p // 2
        iy = oy[:, None] + np.arange(p)[None, :]
        ix = ox[:, None] + np.arange(p)[None, :]
        vy, vx = (iy >= 0) & (iy < h), (ix >= 0) & (ix < w)
        crop = lim[idx[:, None, None], np.clip(iy, 0, h - 1)[:, :, None], np.clip(ix, 0, w - 1)[:, None, :]]
        crop = crop * (vy[:, :, None] & vx[:, None, :])
        spec = sfft.rfft2(crop, s=(p, p), workers=1)
        circ = sfft.irfft2(spec * spec, s=(p, p), workers=1)
        ry = np.mod(myw[idx] - 2 * oy[:, None], p)
        rx = np.mod(mxw[idx] - 2 * ox[:, None], p)
        out[idx] = circ[np.arange(len(idx))[:, None, None], ry[:, :, None], rx[:, None, :]]
    return out


def _soft_disc(dist: np.ndarray, radius: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(radius, np.float32)[:, None, None] - dist + np.float32(0.5), 0.0, 1.0)


def _centroid(
    img: np.ndarray, seg: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Flux-weighted centre (x, y) in pixels of each segment (statmorph's ``_centroid``), and a flag
    that the segment holds positive flux (else the stamp centre)."""
    _, h, w = img.shape
    src = np.where(seg, img, np.float32(0))
    m0 = src.sum(axis=(1, 2))
    ok = (m0 > 0) & seg.any(axis=(1, 2))
    m0s = np.where(ok, m0, 1.0)
    xc = np.where(ok, (src.sum(axis=1) @ xs) / m0s, (w - 1) / 2)
    yc = np.where(ok, (src.sum(axis=2) @ ys) / m0s, (h - 1) / 2)
    return np.clip(xc, 0, w - 1), np.clip(yc, 0, h - 1), ok


def _circular_distance(xs: np.ndarray, ys: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    r"""(N, H, W) float32 distance (pixels) of each pixel centre from the centres (cx, cy) (N,)."""
    dx2 = (xs[None, None, :] - cx.astype(np.float32)[:, None, None]) ** 2
    dy2 = (ys[None, :, None] - cy.astype(np.float32)[:, None, None]) ** 2
    return np.sqrt(dx2 + dy2)


def _asymmetry_start(
    img: np.ndarray, d_c: np.ndarray, xc: np.ndarray, yc: np.ndarray, rp_c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""Half-pixel centre index m = 2c (y, x) that minimises the L2 asymmetry of the aperture-limited image.

    All half-pixel centres within ``CAS_FRACTION * rp_c`` (at least 1 px) of the centroid are scored at
    once (autocorrelation by FFT; the maximum of the autocorrelation is the minimum of the L2 asymmetry).
    """
    n, h, w = img.shape
    r_asym = CAS_EXTENT * rp_c
    lim = img * _soft_disc(d_c, r_asym)
    # only a window of (2L + 1)^2 half-pixel centres (index m = 2c) about 2 x centroid can be
    # within the radius
    r_near = np.maximum(CAS_FRACTION * rp_c, 1.0)
    half_win = math.ceil(2 * float(np.max(r_near))) + 1
    wy0 = np.clip(np.round(2 * yc).astype(np.int64) - half_win, 0, max(2 * h - 2 - 2 * half_win, 0))
    wx0 = np.clip(np.round(2 * xc).astype(np.int64) - half_win, 0, max(2 * w - 2 - 2 * half_win, 0))
    nwy, nwx = min(2 * half_win + 1, 2 * h - 1), min(2 * w - 1, 2 * half_win + 1)
    myw = wy0[:, None] + np.arange(nwy)[None, :]  # (N, nwy)
    mxw = wx0[:, None] + np.arange(nwx)[None, :]
    win = _autocorrelation_window(lim, xc, yc, r_asym + 0.5, 2 * r_near + 1, myw, mxw)
    dist2 = (myw / 2 - yc[:, None])[:, :, None] ** 2 + (mxw / 2 - xc[:, None])[:, None, :] ** 2
    near = dist2 <= (r_near**2)[:, None, None]
    best = np.argmax(np.where(near, win, -np.inf).reshape(n, -1), axis=1)
    return wy0 + best // nwx, wx0 + best % nwx


def _asymmetry(
    img: np.ndarray, sigma: np.ndarray, d_c: np.ndarray, xc: np.ndarray, yc: np.ndarray, rp_c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""CAS asymmetry in the aperture of ``CAS_EXTENT * rp_c`` px (``rp_c``: Petrosian radius about the centroid).

    The L1 (CAS) asymmetry is minimised about the best L2 centre (:func:`_asymmetry_start`) by
    :func:`_asymmetry_search`; its background term is ``E|n - n'| = 2σ/√π`` per pixel.
    Returns (asymmetry (NaN if not finite), y centre, x centre) in pixels.
    """
    n, h, w = img.shape
    r_asym = CAS_EXTENT * rp_c
    by, bx = _asymmetry_start(img, d_c, xc, yc, rp_c)
    sky_asym = 2.0 * sigma / math.sqrt(math.pi)
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
    return np.where(np.isfinite(asymmetry), asymmetry, np.nan), ay, ax


def _flux(grow: _Growth, rp: np.ndarray) -> np.ndarray:
    r"""Flux (counts) within ``FLUX_EXTENT`` Petrosian radii (``grow``: curves of growth about the centre)."""
    return np.abs(grow.at(grow.f, FLUX_EXTENT * rp))


def _r50(grow: _Growth, rp: np.ndarray) -> np.ndarray:
    r"""Half-light radius (pixels) of the flux within ``CAS_EXTENT`` Petrosian radii."""
    return grow.radius_at_fraction(0.5, CAS_EXTENT * rp)


def _concentration(grow: _Growth, rp: np.ndarray) -> np.ndarray:
    r"""Concentration ``5 log10(r80 / r20)`` of the flux within ``CAS_EXTENT`` Petrosian radii."""
    r_tot = CAS_EXTENT * rp
    r20 = grow.radius_at_fraction(0.2, r_tot)
    r80 = grow.radius_at_fraction(0.8, r_tot)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 5.0 * np.log10(r80 / r20)


def _smoothness(img: np.ndarray, seg: np.ndarray, d_a: np.ndarray, rp: np.ndarray) -> np.ndarray:
    r"""Smoothness S: boxcar of ``int(CAS_FRACTION rp)`` px, annulus [CAS_FRACTION rp, CAS_EXTENT rp] about
    the asymmetry centre (distances ``d_a``), background term from statmorph's sky box (none: 0)."""
    box = (CAS_FRACTION * rp).astype(np.int64)
    smooth = img.copy()
    for b in np.unique(box):
        if b >= 2:
            sel = box == b
            smooth[sel] = ndi.uniform_filter(img[sel], size=(1, b, b))
    diff = np.maximum(img - smooth, 0.0)
    ann = _soft_disc(d_a, CAS_EXTENT * rp) - _soft_disc(d_a, CAS_FRACTION * rp)
    sky_s = np.nan_to_num(_skybox_smoothness(img, seg, box), nan=0.0)
    ap_flux = (ann * img).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ap_flux > 0, ((ann * diff).sum(axis=(1, 2)) - ann.sum(axis=(1, 2)) * sky_s) / ap_flux, np.nan)


def _elliptical_distance2(
    xs: np.ndarray, ys: np.ndarray, cx: np.ndarray, cy: np.ndarray, elong: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    r"""(N, H, W) float32 squared elliptical distance (semi-major pixels²) from (cx, cy), axis ratio
    1 / ``elong``, major axis at ``theta`` (rad)."""
    ct = np.cos(theta).astype(np.float32)[:, None, None]
    st = np.sin(theta).astype(np.float32)[:, None, None]
    el = elong.astype(np.float32)[:, None, None]
    dx_ = xs[None, None, :] - cx.astype(np.float32)[:, None, None]
    dy_ = ys[None, :, None] - cy.astype(np.float32)[:, None, None]
    u, v = dx_ * ct + dy_ * st, (dy_ * ct - dx_ * st) * el
    return u * u + v * v


def _gini_segmap(
    img: np.ndarray,
    seg: np.ndarray,
    centroid: tuple[np.ndarray, np.ndarray],
    centre: tuple[np.ndarray, np.ndarray],
    xs: np.ndarray,
    ys: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Segmap of Gini and M20 (statmorph): the image smoothed by ``GINI_FRACTION`` elliptical Petrosian
    radii, thresholded at its mean in the elliptical Petrosian annulus about the ``centroid`` (x, y);
    the component holding the brightest smoothed pixel. The ellipse (second moments of the segment)
    and its Petrosian radius are taken about the asymmetry ``centre`` (x, y).

    Returns the (N, H, W) segmap and a flag: it holds more than one pixel and not the whole stamp.
    """
    n, h, w = img.shape
    (xc, yc), (ax, ay) = centroid, centre
    elong, theta = _second_moments(np.where(seg, img, np.float32(0)), ax, ay)
    d2_a = _elliptical_distance2(xs, ys, ax, ay, elong, theta)
    rpe, _ = _Growth(img, np.sqrt(d2_a), math.hypot(h, w)).petrosian()  # the scan stops at the diagonal
    sm = _gaussian_smooth(img, GINI_FRACTION * rpe)
    # elliptical annulus |d - rpe| <= 1/2 about the centroid, as d^2 bounds
    d2 = _elliptical_distance2(xs, ys, xc, yc, elong, theta)
    r_in = np.maximum(rpe - 0.5 * ANNULUS, 0).astype(np.float32)[:, None, None]
    r_out = (rpe + 0.5 * ANNULUS).astype(np.float32)[:, None, None]
    ring = (d2 >= r_in * r_in) & (d2 <= r_out * r_out)
    with np.errstate(invalid="ignore"):
        thr = (sm * ring).sum(axis=(1, 2)) / np.maximum(ring.sum(axis=(1, 2)), 1)
    labels, _ = _label_planes(sm >= thr[:, None, None])
    gseg = _keep_component(labels, np.argmax(sm.reshape(n, -1), axis=1)).reshape(n, h, w)
    npix = gseg.sum(axis=(1, 2))
    return gseg, (npix > 1) & (npix < h * w)


def _gini(img: np.ndarray, gseg: np.ndarray, gok: np.ndarray) -> np.ndarray:
    r"""Gini coefficient in the Gini segmap (NaN where the segmap is degenerate, ``gok`` False)."""
    return np.where(gok, gini_coefficient(img, gseg), np.nan)


def _m20(img: np.ndarray, gseg: np.ndarray, gok: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    r"""M20: log10 of the second moment of the brightest 20 % of the flux over the total second moment,
    both about the flux-weighted centre of the Gini segmap (Lotz et al. 2004)."""
    n = img.shape[0]
    gimg = np.where(gseg, img, np.float32(0))
    gm0 = gimg.sum(axis=(1, 2), dtype=np.float64)
    gm0s = np.where(gm0 > 0, gm0, 1.0)
    gx = (gimg.sum(axis=1) @ xs) / gm0s
    gy = (gimg.sum(axis=2) @ ys) / gm0s
    r2 = (xs[None, None, :] - gx.astype(np.float32)[:, None, None]) ** 2 + (
        ys[None, :, None] - gy.astype(np.float32)[:, None, None]
    ) ** 2
    mtot = (gimg * r2).sum(axis=(1, 2), dtype=np.float64)
    flat = np.sort(gimg.reshape(n, -1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.cumsum(flat, axis=1) / gm0s[:, None]
    j = np.argmax(frac >= 0.8, axis=1)
    thr20 = flat[np.arange(n), j]
    m20_2 = (np.where(gimg >= thr20[:, None, None], gimg, np.float32(0)) * r2).sum(axis=(1, 2), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        m20 = np.log10(m20_2 / mtot)
    return np.where(gok & (gm0 > 0) & (m20_2 > 0) & (mtot > 0), m20, np.nan)


def morphology_batched(
    images: np.ndarray,
    noise_sigma: np.ndarray,
    segmaps: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    r"""Morphology of (N, H, W) background-subtracted stamps in counts; see the module docstring.

    Steps: segment (:func:`segment`), centroid, Petrosian radius about the centroid (asymmetry
    aperture), asymmetry and its centre, Petrosian radius about that centre (flux, r50, C, S), the
    Gini segmap (Gini, M20).

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
    xs, ys = x[0], y[:, 0]
    diag = math.hypot(h, w)

    xc, yc, ok = _centroid(img, seg, xs, ys)
    d_c = _circular_distance(xs, ys, xc, yc)
    rp_c, _ = _Growth(img, d_c, diag).petrosian()
    asymmetry, ay, ax = _asymmetry(img, sigma, d_c, xc, yc, rp_c)
    d_a = _circular_distance(xs, ys, ax, ay)
    grow_a = _Growth(img, d_a, diag)
    rp, _ = grow_a.petrosian()
    gseg, gok = _gini_segmap(img, seg, (xc, yc), (ax, ay), xs, ys)
    out = {
        "flux": _flux(grow_a, rp),
        "r50": _r50(grow_a, rp),
        "gini": _gini(img, gseg, gok),
        "m20": _m20(img, gseg, gok, xs, ys),
        "concentration": _concentration(grow_a, rp),
        "asymmetry": asymmetry,
        "smoothness": _smoothness(img, seg, d_a, rp),
    }
    return {k: np.where(ok & np.isfinite(v), v, np.nan).astype(np.float64) for k, v in out.items()}


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
        def _calculate_morphology(self) -> None:  # statmorph hook: only the wanted properties
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
            except Exception:  # statmorph raises on pathological stamps
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

    sigma = np.asarray(noise_sigma)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in MORPHOLOGY_PROPERTIES}
    for start in tqdm(range(0, len(images), step), disable=not progress, desc=f"morphology ({engine})", leave=False):
        res = fn(images[start : start + step], sigma[start : start + step])
        for k in MORPHOLOGY_PROPERTIES:
            parts[k].append(res[k])
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
