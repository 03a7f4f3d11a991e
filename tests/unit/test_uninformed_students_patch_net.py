"""Patch networks of Uninformed Students: the supplement's layer sizes, receptive fields, dense = patch-wise."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from edge_ad.errors import ConfigError  # noqa: E402
from trainer.uninformed_students.patch_net import (  # noqa: E402
    PatchNet,
    Teacher,
    geometry,
    reflect_indices,
    reflect_pad,
)

pytestmark = pytest.mark.torch


def _sizes(net: PatchNet, side: int) -> list[int]:
    """Spatial side after every conv or pool layer for a side x side input."""
    x = torch.zeros(1, 3, side, side)
    sizes = []
    for layer in net.layers:
        x = layer(x)
        if not isinstance(layer, torch.nn.LeakyReLU):
            sizes.append(x.shape[-1])
    return sizes


def test_layer_output_sizes_are_the_supplements_tables() -> None:
    # Table 1a (p = 33): 29, 14, 10, 5, 4, 1; Table 1b (p = 17): 12, 8, 4, 1 (with the fixed Conv1 kernels).
    assert _sizes(PatchNet(3, 33, 8, 16), 33) == [29, 14, 10, 5, 4, 1]
    assert _sizes(PatchNet(3, 17, 8, 16), 17) == [12, 8, 4, 1]
    assert _sizes(PatchNet(3, 65, 8, 16), 65)[-1] == 1


def test_receptive_field_and_stride() -> None:
    assert geometry(17) == (17, 1)
    assert geometry(33) == (32, 4)  # the first pool floors 29 -> 14: pixel 33 is never seen
    assert geometry(65) == (60, 8)
    with pytest.raises(ConfigError, match="patch sizes"):
        geometry(21)


def test_paper_width_parameter_counts() -> None:
    # Digest 3.1 [derived]: 1.68 M (p = 33, Conv1 5x5) and 3.06 M (p = 17, Conv1 6x6), decode to 512.
    def count(p: int) -> int:
        return sum(t.numel() for t in Teacher(3, p, 128, 128, 512).parameters())

    assert count(33) == 1_682_048
    assert count(17) == 3_062_528


@pytest.mark.parametrize("patch", [17, 33, 65])
def test_dense_map_equals_the_network_on_each_patch(patch: int) -> None:
    torch.manual_seed(0)
    net = PatchNet(4, patch, 4, 6).eval()
    side = 64
    image = torch.randn(1, 4, side, side)
    with torch.no_grad():
        dense = net.dense(image)
        padded = reflect_pad(image, net.pad)
        r, s = net.receptive_field, net.stride
        assert dense.shape == (1, 6, side // s, side // s)
        for i, j in [(0, 0), (1, 2), (side // s - 1, side // s - 1), (3, 0)]:
            patch_out = net(padded[:, :, i * s : i * s + r, j * s : j * s + r])
            assert patch_out.shape[-2:] == (1, 1)
            torch.testing.assert_close(patch_out[0, :, 0, 0], dense[0, :, i, j], rtol=1e-5, atol=1e-5)


def test_cell_patch_is_centred_on_its_pixel_block() -> None:
    # Cell j of a stride-s map covers the s pixels [s*j, s*j + s): its patch's centre is their centre.
    for patch in (17, 33, 65):
        net = PatchNet(1, patch, 2, 2)
        r, s, pad = net.receptive_field, net.stride, net.pad
        for j in (0, 5):
            patch_centre = s * j - pad + (r - 1) / 2
            assert patch_centre == pytest.approx(s * j + (s - 1) / 2)


def test_reflect_pad_matches_torch_reflect() -> None:
    x = torch.arange(2 * 3 * 7 * 9, dtype=torch.float32).reshape(2, 3, 7, 9)
    torch.testing.assert_close(reflect_pad(x, 3), F.pad(x, (3, 3, 3, 3), mode="reflect"))
    assert reflect_indices(4, 2).tolist() == [2, 1, 0, 1, 2, 3, 2, 1]
    with pytest.raises(ConfigError, match="larger than"):
        reflect_indices(4, 4)


def test_descriptor_layer_is_linear() -> None:
    # Students regress signed (standardised) targets: the last conv has no activation after it.
    net = PatchNet(3, 33, 4, 8)
    assert isinstance(net.layers[-1], torch.nn.Conv2d)
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in net.layers) == 3
    assert all(m.negative_slope == 5e-3 for m in net.layers if isinstance(m, torch.nn.LeakyReLU))
