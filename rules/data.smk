# Data stage: simulate (embedded GalSim data set) -> results/data/raw.h5; preprocess -> splits.
# Other sources (COSMOS, survey stamps) write results/data/raw.h5 from rules/realdata.smk.


if mode_is("images") and source_is("simulate"):

    rule simulate:
        output:
            raw=f"{RESULTS}/data/raw.h5",
        log:
            log_path("simulate"),
        benchmark:
            bench_path("simulate")
        conda:
            "../envs/morphoflow.yaml"
        threads: 8
        resources:
            mem_mb=mem_mb(4000),
            runtime=runtime_min(30),
        params:
            config=pick("simulate", "seed"),
        script:
            "../workflow/scripts/simulate.py"


rule preprocess:
    input:
        raw=f"{RESULTS}/data/raw.h5",
    output:
        train=f"{RESULTS}/data/train.h5",
        val=f"{RESULTS}/data/val.h5",
        test=f"{RESULTS}/data/test.h5",
        cleaning=f"{RESULTS}/data/cleaning.json",
        tfrecords=(
            expand(f"{RESULTS}/data/{{split}}.tfrecord", split=SPLITS) if config["preprocess"]["tfrecord"] else []
        ),
    log:
        log_path("preprocess"),
    benchmark:
        bench_path("preprocess")
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(20),
    params:
        config=pick("preprocess", "seed"),
    script:
        "../workflow/scripts/preprocess.py"


if has_floors():

    rule simulation_floors:
        input:
            test=f"{RESULTS}/data/test.h5",
        output:
            floors=f"{RESULTS}/data/test_floors.json",
        log:
            log_path("simulation_floors"),
        benchmark:
            bench_path("simulation_floors")
        conda:
            "../envs/morphoflow.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(2000),
            runtime=runtime_min(10),
        params:
            config=pick("simulate", "seed", "autoencoder.evaluate.footprint_fraction"),
        script:
            "../workflow/scripts/simulation_floors.py"
