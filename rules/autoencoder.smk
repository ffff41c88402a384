# Stage 1 (issue 3): the PSF-aware autoencoder on galaxy stamps.
# train_autoencoder: data (train, val) -> results/autoencoder/model.pt (+ history.csv); training checkpoints
# live under results/autoencoder/checkpoints/ (resume after SIGTERM/pre-emption); they are not outputs, so a
# failed run keeps them.
# evaluate_autoencoder: test reconstruction figures (chi2 per pixel, MSE, SSIM) + plots.
# extract_latents: encode each split -> results/latents/{split}.h5 (input of the flow stage).


rule train_autoencoder:
    input:
        train=f"{RESULTS}/data/train.h5",
        val=f"{RESULTS}/data/val.h5",
    output:
        model=f"{RESULTS}/autoencoder/model.pt",
        history=f"{RESULTS}/autoencoder/history.csv",
    log:
        log_path("train_autoencoder"),
    benchmark:
        bench_path("train_autoencoder")
    conda:
        "../envs/morphoflow.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb(3000),
        runtime=runtime_min(60),
        gpu=train_gpus(),
    params:
        config=pick("autoencoder", "seed", omit=["autoencoder.evaluate", "autoencoder.extract"]),
        checkpoints=f"{RESULTS}/autoencoder/checkpoints",
    script:
        "../workflow/scripts/train_autoencoder.py"


rule evaluate_autoencoder:
    input:
        unpack(floors_input),
        model=f"{RESULTS}/autoencoder/model.pt",
        test=f"{RESULTS}/data/test.h5",
        history=f"{RESULTS}/autoencoder/history.csv",
    output:
        metrics=f"{RESULTS}/autoencoder/test_metrics.json",
        reconstructions=f"{RESULTS}/plots/reconstructions.png",
        loss=f"{RESULTS}/plots/ae_loss.png",
    log:
        log_path("evaluate_autoencoder"),
    benchmark:
        bench_path("evaluate_autoencoder")
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(10),
    params:
        config=pick("autoencoder.evaluate"),
    script:
        "../workflow/scripts/evaluate_autoencoder.py"


rule extract_latents:
    input:
        model=f"{RESULTS}/autoencoder/model.pt",
        galaxies=f"{RESULTS}/data/{{split}}.h5",
    output:
        latents=f"{RESULTS}/latents/{{split}}.h5",
    log:
        log_path("extract_latents_{split}"),
    benchmark:
        bench_path("extract_latents_{split}")
    wildcard_constraints:
        split="train|val|test",
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(10),
    params:
        config=pick("autoencoder.extract"),
    script:
        "../workflow/scripts/extract_latents.py"
