"""`edge-ad synth`: write a procedural RGB-D conveyor dataset in the MVTec 3D-AD layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_ad.commands._common import console, handle_errors
from edge_ad.errors import ConfigError
from edge_ad.synth_config import DEFECT_TYPES, PART_SHAPES, SynthConfig

_DEFAULTS = SynthConfig()


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to the root app."""
    app.command("synth")(synth)


@handle_errors
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write into; the dataset goes to OUT/CATEGORY.")],
    category: Annotated[
        str, typer.Option("--category", "-c", help="Category (folder) name of the dataset.")
    ] = "part",
    seed: Annotated[
        int, typer.Option("--seed", "-s", help="Random seed; the same seed and options give identical files.")
    ] = 0,
    size: Annotated[
        int, typer.Option("--size", min=32, max=4096, help="Image width and height in pixels.")
    ] = _DEFAULTS.width,
    train: Annotated[
        int, typer.Option("--train", min=0, help="Good parts in train/good.")
    ] = _DEFAULTS.n_train,
    validation: Annotated[
        int, typer.Option("--validation", min=0, help="Good parts in validation/good.")
    ] = _DEFAULTS.n_validation,
    test_good: Annotated[
        int, typer.Option("--test-good", min=0, help="Good parts in test/good.")
    ] = _DEFAULTS.n_test_good,
    test_per_defect: Annotated[
        int, typer.Option("--test-per-defect", min=0, help="Defective parts per defect type in test/.")
    ] = _DEFAULTS.n_test_per_defect,
    defects: Annotated[
        str,
        typer.Option(
            "--defects",
            help="Comma-separated defect types: dent, bump (depth only), stain (RGB only), crack, missing, "
            "contamination.",
        ),
    ] = ",".join(DEFECT_TYPES),
    shapes: Annotated[
        str, typer.Option("--shapes", help="Comma-separated part shapes to draw from: puck, box, ring.")
    ] = ",".join(PART_SHAPES),
    small_fraction: Annotated[
        float,
        typer.Option(
            "--small-fraction", min=0.0, max=1.0, help="Share of defects that are small (2-4 mm across)."
        ),
    ] = _DEFAULTS.small_defect_fraction,
    force: Annotated[
        bool, typer.Option("--force", help="Replace OUT/CATEGORY if it holds an earlier synth dataset.")
    ] = False,
) -> None:
    """Generate a synthetic RGB-D conveyor dataset: parts on a tilted belt seen from above.

    Writes OUT/CATEGORY/{train,validation}/good and test/<defect type>: rgb PNG, xyz float32 TIFF (metres).

    Test defects have exact ground-truth masks; meta.json records seed, settings, intrinsics and belt plane.
    """
    from edge_ad.synth import generate_dataset

    config = SynthConfig(
        width=size,
        height=size,
        n_train=train,
        n_validation=validation,
        n_test_good=test_good,
        n_test_per_defect=test_per_defect,
        defect_types=_split_list("--defects", defects),
        part_shapes=_split_list("--shapes", shapes),
        small_defect_fraction=small_fraction,
    )
    summary = generate_dataset(out, category, seed, config, overwrite=force, progress=True)
    for split, counts in summary.counts.items():
        console.print(f"{split:<11} " + ", ".join(f"{kind} {n}" for kind, n in counts.items()))
    console.print(f"wrote {summary.total} samples to {summary.out} in {summary.seconds:.1f} s")


def _split_list(option: str, text: str) -> tuple[str, ...]:
    """Comma-separated names to a tuple; an empty list is a ConfigError."""
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise ConfigError(f"{option}: needs at least one name")
    return items
