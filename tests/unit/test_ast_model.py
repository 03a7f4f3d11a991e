"""AST networks: positional encoding, flow invertibility and log-det, losses, student, detector."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from edge_ad.errors import ConfigError, TrainingError  # noqa: E402
from trainer.ast.flow import ConditionalFlow, replicate_pad  # noqa: E402
from trainer.ast.losses import masked_mean, student_loss, teacher_loss, teacher_nll_map  # noqa: E402
from trainer.ast.model import ASTDetector, ASTModelConfig, aggregate_masked  # noqa: E402
from trainer.ast.positional import positional_encoding_2d  # noqa: E402
from trainer.ast.student import Student  # noqa: E402
from trainer.ast.train import TeacherInputs, fit_teacher  # noqa: E402
from trainer.config import OptimSettings  # noqa: E402

pytestmark = pytest.mark.torch


class StubBackbone(nn.Module):
    """Stride-8 conv standing in for a real backbone; counts its calls."""

    name = "stub"
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    weights_sha256 = None

    def __init__(self, channels: int = 6) -> None:
        super().__init__()
        self.channels, self.stride = channels, 8
        self.conv = nn.Conv2d(3, channels, 8, stride=8)
        self.calls = 0

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(image)


def _detector(mode: str, aggregation: str = "max", grid: int = 4) -> ASTDetector:
    torch.manual_seed(0)
    config = ASTModelConfig(
        mode=mode,
        grid=grid,
        rgb_channels=6,
        teacher_hidden=8,
        student_width=8,
        student_blocks=1,
        aggregation=aggregation,
    )
    return ASTDetector(config, StubBackbone()).eval()


def _inputs(n: int = 2, grid: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    size = grid * 8
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 8:24, 4:20] = 1.0
    return (
        torch.randn(n, 3, size, size, generator=gen),
        torch.randn(n, 1, size, size, generator=gen) * mask,
        mask,
    )


def test_positional_encoding_follows_the_cflow_formula() -> None:
    enc = positional_encoding_2d(32, 6, 5)
    assert enc.shape == (32, 6, 5)
    x, y = torch.arange(5.0), torch.arange(6.0)
    torch.testing.assert_close(enc[0], torch.sin(x).expand(6, 5))  # first half: columns, frequency 1
    torch.testing.assert_close(enc[1], torch.cos(x).expand(6, 5))
    torch.testing.assert_close(enc[16], torch.sin(y)[:, None].expand(6, 5))  # second half: rows
    torch.testing.assert_close(enc[17], torch.cos(y)[:, None].expand(6, 5))
    torch.testing.assert_close(enc[2], torch.sin(x * math.exp(-2 * math.log(1e4) / 16)).expand(6, 5))
    with pytest.raises(ValueError, match="multiple of 4"):
        positional_encoding_2d(30, 4, 4)


def test_replicate_pad_matches_torch() -> None:
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(replicate_pad(x, 2), nn.functional.pad(x, [2, 2, 2, 2], mode="replicate"))


def _flow(channels: int = 4, cond: int = 4, dtype: torch.dtype = torch.float32) -> ConditionalFlow:
    torch.manual_seed(0)
    flow = ConditionalFlow(channels, cond, hidden=8, kernel_sizes=(3, 3, 3, 5), clamp=1.9, seed=3).to(dtype)
    for i, block in enumerate(flow.blocks):  # gamma starts at 0 (identity); make every block act
        block.s1.gamma.data.fill_(0.6 + 0.1 * i)
        block.s2.gamma.data.fill_(-0.5)
    return flow


def test_flow_inverse_recovers_the_input() -> None:
    flow = _flow(channels=7, cond=4)
    x, c = torch.randn(3, 7, 6, 5), torch.randn(3, 4, 6, 5)
    z, logdet = flow(x, c)
    assert z.shape == x.shape and logdet.shape == (3, 6, 5)
    assert (z - x).abs().max() > 0.1  # the flow does something ...
    assert (flow.inverse(z, c) - x).abs().max() < 1e-4  # ... and undoes it


def test_flow_logdet_matches_the_autograd_jacobian() -> None:
    flow = _flow(dtype=torch.float64)
    x, c = torch.randn(1, 4, 2, 2, dtype=torch.float64), torch.randn(1, 4, 2, 2, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: flow(t, c)[0], x).reshape(16, 16)
    _sign, expected = torch.linalg.slogdet(jac)
    logdet = flow(x, c)[1]
    assert abs(expected.item()) > 0.1
    assert logdet.sum().item() == pytest.approx(expected.item(), abs=1e-8)


def test_flow_starts_as_a_permutation_and_clamps_scales() -> None:
    flow = ConditionalFlow(6, 4, hidden=8, clamp=1.9, seed=0)
    x, c = torch.randn(2, 6, 3, 3), torch.randn(2, 4, 3, 3)
    z, logdet = flow(x, c)
    assert torch.equal(logdet, torch.zeros_like(logdet))
    assert sorted(z[0, :, 0, 0].tolist()) == pytest.approx(sorted(x[0, :, 0, 0].tolist()))
    for block in flow.blocks:
        block.s1.gamma.data.fill_(1e4)
        block.s2.gamma.data.fill_(1e4)
    _z, logdet = flow(x, c)
    # Every channel's log-scale is below alpha * 0.636 * pi / 2 in magnitude: bounded log-det.
    assert logdet.abs().max() < 4 * 6 * 1.9 * 0.636 * math.pi / 2


def test_losses_ignore_background_positions() -> None:
    z, logdet, student = torch.randn(2, 5, 4, 4), torch.randn(2, 4, 4), torch.randn(2, 5, 4, 4)
    mask = torch.zeros(2, 4, 4)
    mask[:, 1:3, 1:3] = 1
    t_loss, s_loss = teacher_loss(z, logdet, mask), student_loss(student, z, mask)
    bg = (mask == 0)[:, None].expand_as(z)
    z2, logdet2, student2 = z.clone(), logdet.clone(), student.clone()
    z2[bg], student2[bg] = float("nan"), 1e6  # anything at all in the background
    logdet2[mask == 0] = float("inf")
    assert teacher_loss(z2, logdet2, mask).item() == pytest.approx(t_loss.item())
    assert student_loss(student2, z, mask).item() == pytest.approx(s_loss.item())
    expected = (0.5 * (z**2).sum(1) - logdet)[:, 1:3, 1:3].mean()
    assert t_loss.item() == pytest.approx(expected.item())
    assert s_loss.item() == pytest.approx(((student - z) ** 2).mean(1)[:, 1:3, 1:3].mean().item())
    assert masked_mean(teacher_nll_map(z, logdet), torch.zeros(2, 4, 4)).item() == 0.0


def test_student_maps_features_to_the_teacher_shape() -> None:
    student = Student(in_channels=10 + 32, out_channels=10, width=16, blocks=3, slope=0.2)
    assert student(torch.randn(2, 42, 5, 7)).shape == (2, 10, 5, 7)
    assert len(student.blocks) == 3
    assert all(m.negative_slope == 0.2 for m in student.modules() if isinstance(m, nn.LeakyReLU))


@pytest.mark.parametrize(("mode", "channels"), [("rgb", 6), ("depth", 64), ("rgbd", 70)])
def test_detector_modes_shapes_and_masking(mode: str, channels: int) -> None:
    detector = _detector(mode)
    assert detector.config.feature_channels == channels
    image, depth, mask = _inputs()
    with torch.no_grad():
        anomaly_map, score = detector(image, depth, mask)
    assert anomaly_map.shape == (2, 1, 4, 4) and score.shape == (2,)
    grid_mask = torch.zeros(4, 4)
    grid_mask[1:3, 0:3] = 1  # pixels 8:24 x 4:20 touch cells rows 1-2, columns 0-2
    assert torch.equal((anomaly_map[0, 0] > 0).float(), grid_mask)
    torch.testing.assert_close(score, anomaly_map.amax(dim=(1, 2, 3)))
    calls = detector.backbone.calls if detector.backbone is not None else 0
    assert calls == (0 if mode == "depth" else 1)
    assert (detector.backbone is None) == (mode == "depth")


def test_detector_mean_aggregation_and_score_maps() -> None:
    detector = _detector("rgbd", aggregation="mean")
    image, depth, mask = _inputs()
    with torch.no_grad():
        anomaly_map, score = detector(image, depth, mask)
        maps = detector.score_maps(image, depth, mask)
    torch.testing.assert_close(maps["distance"], anomaly_map)
    assert set(maps) == {"distance", "teacher_nll", "mask"}
    fg = maps["mask"][:, 0] > 0
    torch.testing.assert_close(score, torch.stack([anomaly_map[i, 0][fg[i]].mean() for i in range(2)]))
    assert torch.all(maps["teacher_nll"][:, 0][~fg] == 0)


def test_masked_max_excludes_background_even_for_negative_maps() -> None:
    values = torch.full((2, 3, 3), -5.0)
    values[0, 1, 1] = -2.0
    mask = torch.zeros(2, 3, 3)
    mask[0, 1, 1] = 1.0
    scores = aggregate_masked(values, mask, "max")
    assert scores.tolist() == [-2.0, 0.0]  # no foreground at all scores 0


def test_model_config_roundtrip_and_validation() -> None:
    config = _detector("rgbd").config
    assert ASTModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown keys colour"):
        ASTModelConfig.from_dict({**config.to_dict(), "colour": 1})
    with pytest.raises(ConfigError, match="model.mode"):
        ASTModelConfig(mode="ir", grid=4, rgb_channels=6)


def test_divergence_raises_training_error() -> None:
    detector = _detector("depth")
    x = torch.randn(4, 64, 4, 4)
    x[0, 0, 0, 0] = float("inf")  # one poisoned sample makes the NLL non-finite
    inputs = TeacherInputs(x, torch.ones(4, 4, 4))
    with pytest.raises(TrainingError, match="teacher training diverged.*epoch 1"):
        fit_teacher(
            detector, inputs, None, OptimSettings(epochs=2, batch_size=4), torch.Generator(), progress=False
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter keeps opset 17
def test_detector_exports_to_onnx_and_matches_onnxruntime(tmp_path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    detector = _detector("rgbd")
    image, depth, mask = _inputs(n=1)
    path = tmp_path / "ast.onnx"
    torch.onnx.export(
        detector,
        (image, depth, mask),
        str(path),
        input_names=["image", "depth", "mask"],
        output_names=["anomaly_map", "score"],
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": image.numpy(), "depth": depth.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        ref_map, ref_score = detector(image, depth, mask)
    np.testing.assert_allclose(out[0], ref_map.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[1], ref_score.numpy(), rtol=1e-4, atol=1e-5)
