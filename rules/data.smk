# Data stage: simulate (embedded GalSim data set) -> results/data/raw.h5; preprocess -> splits.
# Other sources (COSMOS, survey stamps) write results/data/raw.h5 from rules/realdata.smk.


if mode_is("images") and source_is("simulate"):

    rule simulate:
        output:
            raw=f"{RESULTS}/data/raw.h5",
        params:
            config=pick("simulate", "seed"),
        log:
            log_path("simulate"),
        benchmark:
            bench_path("simulate")
        threads: 8
        resources:
            mem_mb=mem_mb(4000),
            runtime=runtime_min(30),
        conda:
            "../envs/morphoflow.yaml"
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
            expand(f"{RESULTS}/data/{{split}}.tfrecord", split=SPLITS)
            if config["preprocess"]["tfrecord"]
            else []
        ),
    params:
        config=pick("preprocess", "seed"),
    log:
        log_path("preprocess"),
    benchmark:
        bench_path("preprocess")
    threads: 1
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(20),
    conda:
        "../envs/morphoflow.yaml"
    script:
        "../workflow/scripts/preprocess.py"


if has_floors():

    rule simulation_floors:
        input:
            test=f"{RESULTS}/data/test.h5",
        output:
            floors=f"{RESULTS}/data/test_floors.json",
        params:
            config=pick("simulate", "seed", "autoencoder.evaluate.footprint_fraction"),
        log:
            log_path("simulation_floors"),
        benchmark:
            bench_path("simulation_floors")
        threads: 1
        resources:
            mem_mb=mem_mb(2000),
            runtime=runtime_min(10),
        conda:
            "../envs/morphoflow.yaml"
        script:
            "../workflow/scripts/simulation_floors.py"
