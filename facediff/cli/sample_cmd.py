"""``facediff sample``: faces for each category and mix, as PNGs plus samples.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facediff.cli.app import app
from facediff.cli.options import (
    DEFAULT_RUN,
    NO_EMA_DEFAULT,
    AgeOpt,
    AttributeGuidanceOpt,
    BatchOpt,
    CheckpointOpt,
    CompileOpt,
    CudaGraphsOpt,
    DeepCacheOpt,
    DeviceOpt,
    ForceOpt,
    GenderOpt,
    GuidanceIntervalOpt,
    GuidanceOpt,
    JsonOpt,
    MixModeOpt,
    MixOpt,
    NoEmaOpt,
    PrecisionOpt,
    QuietOpt,
    RunArg,
    SamplerOpt,
    SeedOpt,
    SpacingOpt,
    StepsOpt,
    attribute_options,
    sample_config,
)
from facediff.config import DEFAULT_SAMPLES_DIR, SampleConfig

_D = SampleConfig()

CategoryCodeOpt = Annotated[
    list[str] | None,
    typer.Option("--category", "-c", metavar="CODE", help="A category code or name (repeatable)."),
]


@app.command("sample")
def sample_command(
    run: RunArg = DEFAULT_RUN,
    category: CategoryCodeOpt = None,
    mix: MixOpt = None,
    gender: GenderOpt = None,
    age: AgeOpt = None,
    attribute_guidance: AttributeGuidanceOpt = None,
    n: Annotated[int, typer.Option("-n", help="Images per category/mix.")] = _D.n,
    sampler: SamplerOpt = _D.sampler,
    steps: StepsOpt = _D.steps,
    spacing: SpacingOpt = _D.spacing,
    guidance: GuidanceOpt = _D.guidance,
    guidance_interval: GuidanceIntervalOpt = None,
    deep_cache: DeepCacheOpt = _D.deep_cache,
    mix_mode: MixModeOpt = _D.mix_mode,
    seed: SeedOpt = _D.seed,
    batch_size: BatchOpt = _D.batch_size,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        DEFAULT_SAMPLES_DIR
    ),
    checkpoint: CheckpointOpt = None,
    no_ema: NoEmaOpt = NO_EMA_DEFAULT,
    precision: PrecisionOpt = _D.precision,
    compile: CompileOpt = _D.compile,
    cuda_graphs: CudaGraphsOpt = _D.cuda_graphs,
    device: DeviceOpt = _D.device,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json: JsonOpt = False,
) -> None:
    """Generate faces for each category and mix (default: all categories, OI, OE, IE, OIE).

    Writes OUT/<LABEL>/<LABEL>_<seed>.png and OUT/samples.json. With --gender/--age
    (a model trained with attributes) LABEL carries the requested values: I_female_60-69.

    Examples:

    \b
      facediff sample --mix OIE -n 10          # runs/faces -> generated_images/OIE/
      facediff sample runs/faces --category O --guidance 5 --seed 100 -n 64
      facediff sample --mix O:0.7,I:0.3 --mix-mode blend --sampler ddim --steps 50
      facediff sample faces-model --checkpoint 5000 --out samples-5k --json
      facediff sample runs/utk -c I --gender female --age 60-69   # -> I_female_60-69/
      facediff sample runs/utk --mix OI --gender f --attribute-guidance gender=5
    """
    from facediff.cli import render
    from facediff.cli.options import print_json
    from facediff.sample_folder import sample

    config = sample_config(locals(), n=n)
    wanted, scales = attribute_options(gender, age, attribute_guidance)
    with render.progress(quiet) as bar:
        result = sample(
            run,
            out,
            config,
            mixes=mix,
            categories=category,
            attributes=wanted,
            attribute_guidance=scales,
            checkpoint_step=checkpoint,
            force=force,
            progress=bar,
        )
    rate = result.images / result.seconds if result.seconds > 0 else 0.0
    if json:
        print_json(
            {
                "out": result.out,
                "images": result.images,
                "files": result.files,
                "attributes": result.attributes,
                "seconds": result.seconds,
                "images_per_second": rate,
                "record": result.record_path,
            }
        )
        return
    render.out.print(
        f"wrote {render.plural(result.images, 'image')} ({', '.join(result.files)}) to "
        f"{result.out} in {result.seconds:.1f}s ({rate:.1f} images/s); "
        f"record: {result.record_path}"
    )
