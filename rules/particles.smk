# Star-particle mode (issue 8, after GalacticFlow / GalacticForge): a conditional flow over each galaxy's
# stars, conditioned on its global parameters and (variant "latent") its stage-1 image latent.
# particles_simulate | particles_import -> particles_clean -> particles_render (results/data/raw.h5)
# -> [preprocess, autoencoder, latents] -> particles_train_{variant} -> particles_sample_{variant}
# -> particles_plots -> particles_metrics (results/metrics.json). See docs/particles.md.
# Entry points: morphoflow.particles.pipeline.run_<rule> (config = pick(...) of the keys each rule reads).

PART = f"{RESULTS}/particles"
_PART = config["particles"]
PARTICLE_VARIANTS = list(_PART["variants"])
PARTICLE_PLOTS = {k: f"{RESULTS}/plots/particles_{k}.png" for k in ("corner", "maps", "hist")}

if not source_is("simulate"):
    raise ValueError(
        "config key 'data.source' must be 'simulate' in particles mode: the images are rendered from the "
        "star particles (choose the particles with 'particles.source': simulate or npy)"
    )


wildcard_constraints:
    variant="latent|global",


if _PART["source"] == "simulate":

    rule particles_simulate:
        output:
            raw_stars=f"{PART}/raw_stars.h5",
        log:
            log_path("particles_simulate"),
        benchmark:
            bench_path("particles_simulate")
        conda:
            "../envs/morphoflow.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(1000),
            runtime=runtime_min(10),
        params:
            config=pick("particles.simulate", "seed"),
        script:
            "../workflow/scripts/particles_simulate.py"

else:

    rule particles_import:
        input:
            folder=_PART["npy_folder"],
        output:
            raw_stars=f"{PART}/raw_stars.h5",
        log:
            log_path("particles_import"),
        benchmark:
            bench_path("particles_import")
        conda:
            "../envs/morphoflow.yaml"
        threads: 1
        resources:
            mem_mb=mem_mb(4000),
            runtime=runtime_min(30),
        script:
            "../workflow/scripts/particles_import.py"


rule particles_clean:
    input:
        raw_stars=f"{PART}/raw_stars.h5",
    output:
        stars=f"{PART}/stars.h5",
        cleaning=f"{PART}/cleaning.json",
    log:
        log_path("particles_clean"),
    benchmark:
        bench_path("particles_clean")
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(10),
    params:
        config=pick("particles.clean"),
    script:
        "../workflow/scripts/particles_clean.py"


rule particles_render:
    input:
        stars=f"{PART}/stars.h5",
    output:
        raw=f"{RESULTS}/data/raw.h5",
    log:
        log_path("particles_render"),
    benchmark:
        bench_path("particles_render")
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=runtime_min(10),
    params:
        config=pick("particles.render", "seed"),
    script:
        "../workflow/scripts/particles_render.py"


rule particles_train:
    input:
        stars=f"{PART}/stars.h5",
        train=f"{RESULTS}/latents/train.h5",
        val=f"{RESULTS}/latents/val.h5",
    output:
        model=f"{PART}/flow_{{variant}}.pt",
        history=f"{PART}/history_{{variant}}.csv",
    log:
        log_path("particles_train_{variant}"),
    benchmark:
        bench_path("particles_train_{variant}")
    conda:
        "../envs/morphoflow.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(60),
        gpu=train_gpus(),
    params:
        config=pick("particles.context", "particles.max_stars_per_galaxy", "particles.flow", "seed"),
        checkpoints=lambda wc: f"{PART}/checkpoints/{wc.variant}",
    script:
        "../workflow/scripts/particles_train.py"


rule particles_sample:
    input:
        model=f"{PART}/flow_{{variant}}.pt",
        stars=f"{PART}/stars.h5",
        test=f"{RESULTS}/latents/test.h5",
    output:
        samples=f"{PART}/samples_{{variant}}.h5",
    log:
        log_path("particles_sample_{variant}"),
    benchmark:
        bench_path("particles_sample_{variant}")
    conda:
        "../envs/morphoflow.yaml"
    # One torch thread: on a shared 2-core machine two intra-op threads sample ~6x slower (bench/particles.py).
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(10),
    params:
        config=pick("particles.sample", "seed"),
    script:
        "../workflow/scripts/particles_sample.py"


rule particles_plots:
    input:
        stars=f"{PART}/stars.h5",
        samples=expand(f"{PART}/samples_{{variant}}.h5", variant=PARTICLE_VARIANTS),
    output:
        **PARTICLE_PLOTS,
    log:
        log_path("particles_plots"),
    benchmark:
        bench_path("particles_plots")
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(10),
    params:
        # the order of the variants = the order of input `samples`
        config=pick("particles.variants"),
    script:
        "../workflow/scripts/particles_plots.py"


rule particles_metrics:
    input:
        stars=f"{PART}/stars.h5",
        samples=expand(f"{PART}/samples_{{variant}}.h5", variant=PARTICLE_VARIANTS),
        models=expand(f"{PART}/flow_{{variant}}.pt", variant=PARTICLE_VARIANTS),
        train=f"{RESULTS}/latents/train.h5",
        val=f"{RESULTS}/latents/val.h5",
        test=f"{RESULTS}/latents/test.h5",
        cleaning=f"{PART}/cleaning.json",
        plots=list(PARTICLE_PLOTS.values()),
        autoencoder=f"{RESULTS}/autoencoder/test_metrics.json",
    output:
        metrics=f"{RESULTS}/metrics.json",
    log:
        log_path("particles_metrics"),
    benchmark:
        bench_path("particles_metrics")
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(30),
    params:
        # the order of the variants = the order of inputs `samples` and `models`
        config=pick("particles.variants", "particles.metrics", "seed"),
        # wall times (timing_s): the other rules' benchmark files, as in rule metrics
        benchmarks="benchmarks",
    script:
        "../workflow/scripts/particles_metrics.py"
