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
    params:
        config=pick("autoencoder", "seed"),
        checkpoints=f"{RESULTS}/autoencoder/checkpoints",
    log:
        log_path("train_autoencoder"),
    benchmark:
        bench_path("train_autoencoder")
    threads: 2
    resources:
        mem_mb=mem_mb(3000),
        runtime=runtime_min(60),
        gpu=train_gpus(),
    conda:
        "../envs/morphoflow.yaml"
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
    params:
        config=pick("autoencoder.evaluate"),
    log:
        log_path("evaluate_autoencoder"),
    benchmark:
        bench_path("evaluate_autoencoder")
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(10),
    conda:
        "../envs/morphoflow.yaml"
    script:
        "../workflow/scripts/evaluate_autoencoder.py"


rule extract_latents:
    input:
        model=f"{RESULTS}/autoencoder/model.pt",
        galaxies=f"{RESULTS}/data/{{split}}.h5",
    output:
        latents=f"{RESULTS}/latents/{{split}}.h5",
    wildcard_constraints:
        split="train|val|test",
    params:
        config=pick("autoencoder.extract"),
    log:
        log_path("extract_latents_{split}"),
    benchmark:
        bench_path("extract_latents_{split}")
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(10),
    conda:
        "../envs/morphoflow.yaml"
    script:
        "../workflow/scripts/extract_latents.py"
