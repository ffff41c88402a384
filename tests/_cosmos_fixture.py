r"""A tiny COSMOS-format training sample, made with GalSim and astropy, for tests and benchmarks.

It mimics the layout of GalSim's ``COSMOS_25.2_training_sample`` tarball closely enough for
``galsim.COSMOSCatalog`` / ``galsim.RealGalaxyCatalog`` to read it: the real-galaxy catalog
(``real_galaxy_catalog_25.2.fits``), the parametric fits (``..._fits.fits``), the selection table
(``..._selection.fits``), multi-HDU galaxy and PSF image files and the noise correlation function
(GalSim ships the real one, ``acs_I_unrot_sci_20_cf.fits``, in its share folder). The galaxies are
Sérsic profiles convolved with an HST-like PSF (Airy ⊗ Gaussian), drawn at 0.03"/pixel with COSMOS
correlated noise. :class:`FileServer` is a real HTTP server on 127.0.0.1 (Range, cut connections).
Galaxy ``BAD_FIT`` has failed parametric fits and galaxy ``BAD_STAMP`` a low S/N
in the selection table, so that ``exclusion_level="marginal"`` removes exactly these two.
"""

from __future__ import annotations

__all__ = ["BAD_FIT", "BAD_STAMP", "SAMPLE", "FileServer", "make_cosmos_sample", "make_cosmos_tarball"]

import http.server
import os
import shutil
import tarfile
import threading
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits

SAMPLE = "25.2"
PIXEL_SCALE = 0.03  # arcsec / pixel, COSMOS ACS F814W
ZEROPOINT = 25.94  # AB mag of 1 count/s
BAD_FIT = 3  # index of the galaxy with failed parametric fits
BAD_STAMP = 5  # index of the galaxy with a low S/N in the selection table


def make_cosmos_sample(folder: str | os.PathLike, n: int = 10, seed: int = 1, sample: str = SAMPLE) -> Path:
    r"""Write a COSMOS-format training sample of ``n`` galaxies into ``folder/COSMOS_<sample>_training_sample``."""

    root = Path(folder) / f"COSMOS_{sample}_training_sample"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    noise_file = Path(galsim.meta_data.share_dir) / "acs_I_unrot_sci_20_cf.fits"
    shutil.copy(noise_file, root / noise_file.name)
    cn = galsim.getCOSMOSNoise(file_name=str(noise_file), rng=galsim.BaseDeviate(seed))
    variance = cn.getVariance()

    psf = galsim.Convolve(
        galsim.Airy(lam=814.0, diam=2.4, obscuration=0.33, scale_unit=galsim.arcsec), galsim.Gaussian(sigma=0.02)
    )
    gal_hdus, psf_hdus = [fits.PrimaryHDU()], [fits.PrimaryHDU()]
    rows: dict[str, list] = {
        k: [] for k in ("mag", "n", "q", "beta", "hlr", "flux", "flux_radius", "zphot", "stamp_flux")
    }
    for i in range(n):
        mag = rng.uniform(20.5, 23.0)
        flux = 10 ** (-0.4 * (mag - ZEROPOINT))
        hlr = rng.uniform(0.15, 0.5)
        sn = rng.uniform(0.8, 3.0)
        q = rng.uniform(0.4, 0.95)
        beta = rng.uniform(0, np.pi)
        gal = galsim.Sersic(n=sn, half_light_radius=hlr, flux=flux).shear(q=q, beta=beta * galsim.radians)
        size = int(rng.integers(48, 80)) // 2 * 2
        im = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=PIXEL_SCALE)
        im.addNoise(cn.copy(rng=galsim.BaseDeviate(seed + 100 + i)))
        gal_hdus.append(fits.ImageHDU(im.array.astype(np.float32)))
        pim = psf.drawImage(nx=41, ny=41, scale=PIXEL_SCALE)
        psf_hdus.append(fits.ImageHDU(pim.array.astype(np.float32)))
        for k, v in (
            ("mag", mag),
            ("n", sn),
            ("q", q),
            ("beta", beta),
            ("hlr", hlr),
            ("flux", flux),
            ("flux_radius", hlr / PIXEL_SCALE * rng.uniform(0.9, 1.1)),
            ("zphot", rng.uniform(0.2, 2.0)),
            ("stamp_flux", float(im.array.sum())),
        ):
            rows[k].append(v)

    gal_file, psf_file = f"real_galaxy_images_{sample}_n1.fits", f"real_galaxy_PSF_images_{sample}_n1.fits"
    fits.HDUList(gal_hdus).writeto(root / gal_file, overwrite=True)
    fits.HDUList(psf_hdus).writeto(root / psf_file, overwrite=True)

    ident = np.arange(n, dtype=np.int64) * 7 + 1000
    r = {k: np.asarray(v) for k, v in rows.items()}
    col = fits.Column
    real = fits.BinTableHDU.from_columns(
        [
            col("IDENT", "J", array=ident),
            col("RA", "D", array=150.0 + rng.uniform(0, 1, n)),
            col("DEC", "D", array=2.0 + rng.uniform(0, 1, n)),
            col("MAG", "D", array=r["mag"]),
            col("BAND", "5A", array=["F814W"] * n),
            col("WEIGHT", "D", array=np.ones(n)),
            col("GAL_FILENAME", "40A", array=[gal_file] * n),
            col("PSF_FILENAME", "40A", array=[psf_file] * n),
            col("GAL_HDU", "J", array=np.arange(1, n + 1)),
            col("PSF_HDU", "J", array=np.arange(1, n + 1)),
            col("PIXEL_SCALE", "D", array=np.full(n, PIXEL_SCALE)),
            col("NOISE_MEAN", "D", array=np.zeros(n)),
            col("NOISE_VARIANCE", "D", array=np.full(n, variance)),
            col("NOISE_FILENAME", "40A", array=[noise_file.name] * n),
            col("stamp_flux", "D", array=r["stamp_flux"]),
        ]
    )
    real.writeto(root / f"real_galaxy_catalog_{sample}.fits", overwrite=True)

    # Parametric fits. sersicfit: (intensity, hlr [pixels], n, q, boxiness, x0, y0, phi [rad]);
    # bulgefit: disk (8 values) then bulge (8 values); hlr / flux: (sersic, bulge, disk).
    sersicfit = np.zeros((n, 8))
    sersicfit[:, 1], sersicfit[:, 2], sersicfit[:, 3], sersicfit[:, 7] = (
        r["hlr"] / PIXEL_SCALE,
        r["n"],
        r["q"],
        r["beta"],
    )
    bulgefit = np.zeros((n, 16))
    bulgefit[:, 1], bulgefit[:, 2], bulgefit[:, 3], bulgefit[:, 7] = r["hlr"] / PIXEL_SCALE, 1.0, r["q"], r["beta"]
    bulgefit[:, 9], bulgefit[:, 10], bulgefit[:, 11], bulgefit[:, 15] = (
        r["hlr"] / PIXEL_SCALE / 2,
        4.0,
        r["q"],
        r["beta"],
    )
    fit_status = np.ones((n, 5), dtype=np.int32)
    fit_status[BAD_FIT] = 0
    hlr3 = np.stack([r["hlr"], r["hlr"] / 2, r["hlr"]], axis=1)
    flux3 = np.stack([r["flux"], 0.3 * r["flux"], 0.7 * r["flux"]], axis=1)
    param = fits.BinTableHDU.from_columns(
        [
            col("IDENT", "J", array=ident),
            col("mag_auto", "D", array=r["mag"]),
            col("flux_radius", "D", array=r["flux_radius"]),
            col("zphot", "D", array=r["zphot"]),
            col("sersicfit", "8D", array=sersicfit),
            col("bulgefit", "16D", array=bulgefit),
            col("fit_status", "5J", array=fit_status),
            col("fit_mad_s", "D", array=np.full(n, 0.01)),
            col("fit_mad_b", "D", array=np.full(n, 0.01)),
            col("fit_dvc_btt", "D", array=np.full(n, 0.3)),
            col("use_bulgefit", "J", array=np.zeros(n, dtype=np.int32)),
            col("viable_sersic", "J", array=np.ones(n, dtype=np.int32)),
            col("hlr", "3D", array=hlr3),
            col("flux", "3D", array=flux3),
        ]
    )
    param.writeto(root / f"real_galaxy_catalog_{sample}_fits.fits", overwrite=True)

    sn_gauss = np.full(n, 50.0)
    sn_gauss[BAD_STAMP] = 3.0
    selection = fits.BinTableHDU.from_columns(
        [
            col("IDENT", "J", array=ident),
            col("dmag", "D", array=np.full(n, 0.05)),
            col("sn_ellip_gauss", "D", array=sn_gauss),
            col("min_mask_dist_pixels", "D", array=np.full(n, 30.0)),
            col("average_mask_adjacent_pixel_count", "D", array=np.zeros(n)),
            col("peak_image_pixel_count", "D", array=np.ones(n)),
        ]
    )
    selection.writeto(root / f"real_galaxy_catalog_{sample}_selection.fits", overwrite=True)
    return root


def make_cosmos_tarball(folder: str | os.PathLike, n: int = 10, seed: int = 1, sample: str = SAMPLE) -> Path:
    r"""Write the sample of :func:`make_cosmos_sample` as ``folder/COSMOS_<sample>_training_sample.tar.gz``."""

    folder = Path(folder)
    build = folder / "build"
    root = make_cosmos_sample(build, n=n, seed=seed, sample=sample)
    tarball = folder / f"{root.name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(root, arcname=root.name)
    shutil.rmtree(build)
    return tarball


class FileServer:
    r"""Serve ``files`` (path -> bytes) in a background thread.

    ``cut_first``: the first GET of each path sends only half of the body, then closes the connection
    (``Content-Length`` announces the whole file, like a dropped transfer). ``requests`` records the
    (path, Range header) of every GET.
    """

    def __init__(self, files: dict[str, bytes], cut_first: bool = False) -> None:
        self.files = files
        self.cut_first = cut_first
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                first = all(p != self.path for p, _ in server.requests)
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if server.cut_first and first:
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(part)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
