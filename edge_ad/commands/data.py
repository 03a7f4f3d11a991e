"""`edge-ad inspect-data`: what a dataset folder holds, and whether its files decode and agree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from edge_ad.commands._common import console, handle_errors

# A median depth this large cannot be metres at a factory line: the data is probably in mm.
_IMPLAUSIBLE_METRES = 20.0


def register(app: typer.Typer) -> None:
    """Add the data commands to the root app."""
    app.command("inspect-data")(inspect_data)


@handle_errors
def inspect_data(
    category: Annotated[Path, typer.Argument(help="Category folder, e.g. DATA/mvtec3d/tire.")],
    samples: Annotated[
        int, typer.Option("--samples", "-n", min=1, help="Samples per split to decode and check.")
    ] = 3,
) -> None:
    """Show a dataset's layout, splits, counts per defect type, image size and point-cloud quality.

    Lists every file (checking that rgb, xyz and gt pair up) and decodes a few samples per split
    (checking sizes); any inconsistency exits with code 3 and names the file.
    """
    from edge_ad.dataset import available_splits, detect_layout, open_split
    from edge_ad.geometry import valid_mask

    layout = detect_layout(category)
    console.print(f"[bold]{category}[/]  layout: {layout}")
    table = Table(
        "split",
        "type",
        "samples",
        "with gt",
        "WxH",
        "xyz valid",
        "median z",
        caption=f"WxH and xyz from up to {samples} decoded samples per split",
    )
    notes: list[str] = []
    for split_name in available_splits(category):
        split = open_split(category, split_name)
        decoded = [split[i] for i in _spread(len(split), samples)]
        sizes = ", ".join(sorted({f"{s.rgb.shape[1]}x{s.rgb.shape[0]}" for s in decoded}))
        with_gt = dict.fromkeys(split.defect_types, 0)
        for ref in split.refs:
            with_gt[ref.defect_type] += ref.gt is not None
        valid_text, depth_text = "none", "-"
        clouds = [s.xyz for s in decoded if s.xyz is not None]
        if clouds:
            # valid_mask's default depth range is the runtime's: this is the share of usable points.
            fractions = [float(valid_mask(xyz).mean()) for xyz in clouds]
            valid_text = f"{min(fractions):.0%}-{max(fractions):.0%}"
            depths = np.concatenate([xyz[..., 2][xyz[..., 2] != 0] for xyz in clouds])
            if depths.size:
                median_z = float(np.median(depths))
                depth_text = f"{median_z:.3f} m"
                if median_z > _IMPLAUSIBLE_METRES:
                    notes.append(
                        f"{split_name}: median z {median_z:.1f} is implausible in metres (millimetres?)"
                    )
        for i, (defect_type, count) in enumerate(split.counts().items()):
            # Split-wide facts go on the first row only, to keep the table readable.
            first = i == 0
            table.add_row(
                split_name if first else "",
                defect_type,
                str(count),
                str(with_gt[defect_type]),
                sizes if first else "",
                valid_text if first else "",
                depth_text if first else "",
            )
        table.add_row("", "[dim]total[/]", f"[dim]{len(split)}[/]", "", "", "", "", end_section=True)
    console.print(table)
    for note in notes:
        console.print(f"[yellow]warning[/]: {note}")


def _spread(n: int, k: int) -> list[int]:
    """Up to ``k`` indices spread over ``range(n)``, so that several defect types get checked."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
