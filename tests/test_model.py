import dataclasses

import pytest
import torch

from coatbench.config import VARIANTS, build_config
from coatbench.model import LayerNorm2d, RelativePositionBias, build_model


def one_block_per_stage(config):
    """CoAtNet-6/7 at one block per stage: every width and block type, a fraction of the memory."""
    stages = tuple(dataclasses.replace(s, depth=1) for s in config.stages)
    return dataclasses.replace(config, stages=stages)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_forward_backward_small_input(name):
    config = build_config(name, image_size=32, num_classes=10)
    if name in ("coatnet-6", "coatnet-7"):  # 1.3B / 2.4B params: too large for a 24 GB CI machine
        config = one_block_per_stage(config)
    torch.manual_seed(0)
    model = build_model(config)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = build_model(build_config("coatnet-0", image_size=64, norm="ln")).eval()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    got = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("downsample", [None, "dwconv"])
def test_mbconv_is_the_paper_block_with_se_gate_applied_inside_project(downsample):
    """The SE gate goes into the project conv's weights; the block must still compute
    x' = shortcut(x) + project(se(y) * y) exactly, gradients included."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    block = build_model(build_config("coatnet-0", image_size=64, downsample=downsample)).stages[0].blocks[0]
    x = torch.randn(2, block.norm.num_features, 16, 16, requires_grad=True)

    def reference(x):
        y = F.gelu(block.expand_norm(block.expand(block.norm(x))))
        y = F.gelu(block.dwconv_norm(block.dwconv(y)))
        return block.shortcut(x) + block.project(y * block.se(y))

    expected = reference(x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    for layout in (torch.contiguous_format, torch.channels_last):
        x_ = x.detach().contiguous(memory_format=layout).requires_grad_()
        got = block(x_)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        (grad,) = torch.autograd.grad(got.square().sum(), x_)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-4)


def test_relative_bias_is_table_at_offset():
    torch.manual_seed(0)
    bias = RelativePositionBias(heads=3, grid=5)
    full = bias()  # (heads, N, N)
    for (yi, xi), (yj, xj) in [((0, 0), (4, 4)), ((2, 3), (1, 0)), ((4, 1), (4, 1))]:
        i, j = yi * 5 + xi, yj * 5 + xj
        torch.testing.assert_close(full[:, i, j], bias.table[:, yi - yj + 4, xi - xj + 4])


def test_relative_bias_table_resized_for_another_image_size():
    small = build_model(build_config("coatnet-0", image_size=64))
    large = build_model(build_config("coatnet-0", image_size=96))
    large.load_state_dict(small.state_dict())
    key = "stages.2.blocks.1.attn.bias.table"
    assert small.state_dict()[key].shape[-1] == 2 * 4 - 1
    assert large.state_dict()[key].shape[-1] == 2 * 6 - 1
    # a constant table stays constant under bilinear resizing
    state = small.state_dict()
    state[key] = torch.full_like(state[key], 0.5)
    large.load_state_dict(state)
    torch.testing.assert_close(large.state_dict()[key], torch.full_like(large.state_dict()[key], 0.5))


def test_ln_knob_replaces_every_mbconv_norm_and_only_those():
    bn = build_model(build_config("coatnet-0"), "meta")
    ln = build_model(build_config("coatnet-0", norm="ln"), "meta")
    for (name, a), (_, b) in zip(bn.named_modules(), ln.named_modules()):
        if isinstance(a, torch.nn.BatchNorm2d) and not name.startswith("stem"):
            assert isinstance(b, LayerNorm2d), name
        else:
            assert type(a) is type(b), name


def test_bf16_autocast_keeps_layernorm_output_in_bf16():
    model = build_model(build_config("coatnet-0", image_size=32, norm="ln")).eval()
    norm_outputs = []
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.register_forward_hook(lambda m, i, o: norm_outputs.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(1, 3, 32, 32))
    assert norm_outputs and set(norm_outputs) == {torch.bfloat16}
