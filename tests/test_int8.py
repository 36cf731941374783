"""int8 linear layers: both integer kernels give the same bits, a row's
output does not depend on the rows beside it, and siblings that share one
quantization of their input answer as if each quantized it itself."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from t5electra.server import int8
from t5electra.server.int8 import Int8Linear, project, quantize_linears

pytestmark = pytest.mark.unit


def _linear(in_features: int, out_features: int, *, bias: bool = False) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features, bias=bias)


@pytest.fixture
def prepacked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layer built while it is active takes the prepacked kernel."""
    if not int8._prepacked_kernel_available():
        pytest.skip("this torch build has no oneDNN int8 linear")
    monkeypatch.setattr(int8, "PREPACKED_MIN_WEIGHTS", 0)


@pytest.mark.parametrize("shape", [(64, 96), (96, 64)])
@pytest.mark.parametrize("bias", [False, True])
def test_the_two_kernels_give_the_same_bits(shape: tuple[int, int], bias: bool, request: pytest.FixtureRequest) -> None:
    linear = _linear(*shape, bias=bias)
    plain = Int8Linear(linear)
    request.getfixturevalue("prepacked")
    packed = Int8Linear(linear)
    assert "prepacked" in packed.extra_repr() and "int_mm" in plain.extra_repr()
    x = torch.randn(2, 17, shape[0]) * 3
    with torch.inference_mode():
        assert torch.equal(plain(x), packed(x))


@pytest.mark.parametrize("kernel", ["int_mm", "prepacked"])
def test_a_row_answers_the_same_alone_and_in_any_batch(kernel: str, request: pytest.FixtureRequest) -> None:
    if kernel == "prepacked":
        request.getfixturevalue("prepacked")
    layer = Int8Linear(_linear(128, 80))
    rows = torch.randn(16, 128) * torch.logspace(-2, 2, 16)[:, None]
    with torch.inference_mode():
        together = layer(rows)
        for size in (1, 3, 16):
            for start in range(0, 16, size):
                assert torch.equal(layer(rows[start : start + size]), together[start : start + size])


def test_the_int8_output_stays_near_float32() -> None:
    linear = _linear(256, 128)
    x = torch.randn(8, 256)
    with torch.inference_mode():
        exact, approximate = linear(x), Int8Linear(linear)(x)
    assert (approximate - exact).abs().max() <= 0.02 * exact.abs().max()


def test_attention_siblings_quantize_their_input_once() -> None:
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v, self.o = (_linear(32, 32) for _ in range(4))

    model = Attention()
    separate = {name: Int8Linear(getattr(model, name)) for name in ("q", "k", "v", "o")}
    assert quantize_linears(model) == 4
    q_shared = model.q._shared
    assert q_shared is not None and model.k._shared is model.v._shared is q_shared and model.o._shared is None
    x, other = torch.randn(5, 32), torch.randn(5, 32)
    with torch.inference_mode():
        for name in ("q", "k", "v"):
            assert torch.equal(getattr(model, name)(x), separate[name](x))
        assert torch.equal(model.k(other), separate["k"](other))  # a new tensor is quantized afresh
        assert torch.equal(model.o(x), separate["o"](x))


@pytest.mark.parametrize("bias", [False, True])
def test_fused_siblings_give_each_layers_own_bits(bias: bool) -> None:
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query, self.key, self.value = (_linear(48, 32, bias=bias) for _ in range(3))

    model = Attention()
    float_layers = (model.query, model.key, model.value)
    x = torch.randn(3, 7, 48)
    with torch.inference_mode():
        assert all(torch.equal(a, b(x)) for a, b in zip(project(float_layers, x), float_layers, strict=True))
        separate = [Int8Linear(layer)(x) for layer in float_layers]
        quantize_linears(model)
        siblings = (model.query, model.key, model.value)
        fused = project(siblings, x)
        group = model.query._shared
        assert group is not None and group.fused(siblings) is not None and model.value._shared is group
        assert all(torch.equal(a, b) for a, b in zip(fused, separate, strict=True))
        assert [t.shape for t in fused] == [(3, 7, 32)] * 3
        partial = project((model.key, model.query), x)  # another selection and order: fused anew, same bits
        assert torch.equal(partial[0], separate[1]) and torch.equal(partial[1], separate[0])
