# Your own galaxies (issue 15): a contract file (data.source file), a FITS cube of stamps with a
# catalog and a PSF (fits), or any GalSim RealGalaxyCatalog (realgalaxy). Each writes
# results/data/raw.h5 only when config data.source selects it. See docs/own-data.md.


if source_is("file"):

    rule contract_file:
        input:
            path=own_input("path"),
        output:
            raw=f"{RESULTS}/data/raw.h5",
            record=f"{RESULTS}/data/raw_source.json",
        log:
            log_path("contract_file"),
        benchmark:
            bench_path("contract_file")
        conda:
            "../envs/morphoflow.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(4000),
            runtime=runtime_min(20),
        params:
            config=pick("data"),
        script:
            "../workflow/scripts/contract_file.py"


if source_is("fits"):

    rule fits_stamps:
        input:
            images=own_input("images", "fits"),
            catalog=own_input("catalog", "fits"),
            psf=own_input("psf", "fits"),
        output:
            raw=f"{RESULTS}/data/raw.h5",
        log:
            log_path("fits_stamps"),
        benchmark:
            bench_path("fits_stamps")
        conda:
            "../envs/morphoflow.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(4000),
            runtime=runtime_min(20),
        params:
            config=pick("fits", omit=["fits.images", "fits.catalog", "fits.psf"]),
        script:
            "../workflow/scripts/fits_stamps.py"


if source_is("realgalaxy"):

    rule realgalaxy:
        input:
            catalog=own_input("catalog", "realgalaxy"),
        output:
            raw=f"{RESULTS}/data/raw.h5",
        log:
            log_path("realgalaxy"),
        benchmark:
            bench_path("realgalaxy")
        conda:
            "../envs/morphoflow.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(8000),
            runtime=runtime_min(120),
        params:
            config=pick("realgalaxy", "seed", omit=["realgalaxy.catalog"]),
        script:
            "../workflow/scripts/realgalaxy.py"
