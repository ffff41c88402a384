# Real data (issue 7): GalSim's COSMOS training sample (download -> cosmos) and galaxy stamps cut
# from a survey image (hdf_image -> cut_stamps). Each writes results/data/raw.h5 only when
# config data.source selects it. See docs/real-data.md.

_DL = config["download"]
COSMOS_TARBALL = f"{_DL['dir']}/COSMOS_{_DL['sample']}_training_sample.tar.gz"
HDF_FITS = "resources/hdf/hubble_deep_field.fits"


# Resumable (HTTP Range), checksummed download of the ~4.5 GB tarball. Only url is a param, so that
# changing retries/timeouts, or pinning known_hash to the recorded hash, does not trigger a new
# download; a pin that differs from the recorded <tarball>.sha256 is refused here, at DAG load.
from morphoflow.data.download import check_pin

check_pin(COSMOS_TARBALL, _DL["known_hash"])


rule download:
    output:
        tarball=COSMOS_TARBALL,
    log:
        log_path("download"),
    benchmark:
        bench_path("download")
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(500),
        runtime=runtime_min(240),
    params:
        url=_DL["url"].format(sample=_DL["sample"]),
    script:
        "../workflow/scripts/download.py"


if source_is("cosmos"):

    rule cosmos:
        input:
            tarball=ancient(COSMOS_TARBALL),
        output:
            raw=f"{RESULTS}/data/raw.h5",
        log:
            log_path("cosmos"),
        benchmark:
            bench_path("cosmos")
        conda:
            "../envs/morphoflow.yaml"
        threads: 4
        resources:
            # ~160 kB per galaxy (image + PSF + noise power, float32), held twice while writing.
            mem_mb=mem_mb(32000),
            runtime=runtime_min(360),
        params:
            config=pick("cosmos", "download.sample", "seed"),
        script:
            "../workflow/scripts/cosmos.py"


if source_is("stamps"):

    if config["stamps"]["image"] == "hdf":

        rule hdf_image:
            output:
                image=HDF_FITS,
            log:
                log_path("hdf_image"),
            benchmark:
                bench_path("hdf_image")
            conda:
                "../envs/morphoflow.yaml"
            threads: 1
            resources:
                mem_mb=mem_mb(500),
                runtime=runtime_min(5),
            params:
                config=pick("stamps.pixel_scale_arcsec"),
            script:
                "../workflow/scripts/hdf_image.py"

    rule cut_stamps:
        input:
            **({"weight": config["stamps"]["weight"]} if config["stamps"]["weight"] else {}),
            **({"psf": config["stamps"]["psf"]} if config["stamps"]["psf"] else {}),
            image=HDF_FITS if config["stamps"]["image"] == "hdf" else config["stamps"]["image"],
        output:
            raw=f"{RESULTS}/data/raw.h5",
        log:
            log_path("cut_stamps"),
        benchmark:
            bench_path("cut_stamps")
        conda:
            "../envs/morphoflow.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(2000),
            runtime=runtime_min(20),
        params:
            config=pick("stamps", "seed"),
        script:
            "../workflow/scripts/cut_stamps.py"
