"""Rule manifest: validate train.csv, taxonomy.csv and every audio header."""

from dawnchorus.data.manifest import build_manifest, write_manifest
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    params = snakemake.params
    result = build_manifest(
        params.data_dir,
        sample_rate=params.sample_rate,
        n_fft=params.n_fft,
        n_shards=params.n_shards,
        seed=params.seed,
        max_samples=params.max_samples,
        workers=snakemake.threads,
        progress=True,
    )
    output = snakemake.output
    write_manifest(result, output.manifest, output.rejected, output.classes)
