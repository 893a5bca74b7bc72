"""Params and multiply-adds of a network (CoAtNet, timm's, a factory's), with no op left uncounted.

Convention: `macs` are multiply-accumulates, which is what the paper calls FLOPs (its
Table 3 numbers are MACs); `flops` = 2 x macs. Matmuls and convolutions count their
multiply-adds; normalisation, activation, pooling and element-wise ops count one per
element (fvcore's own rule for norms), so nothing the model computes is silently zero.

CoAtNet is built on the meta device: counting CoAtNet-7 at 512 allocates no weights. Other
networks are traced whole on the CPU at one image (their parts are not known to repeat); an op
that fvcore has no rule for is listed in `uncounted_ops`, not counted as zero.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version

import torch

from coatbench.config import ExternalModel, Network
from coatbench.errors import CoatbenchError
from coatbench.model import RelativePositionBias, build_model
from coatbench.networks import architecture, build


class UncountedModel(CoatbenchError):
    """An external model whose forward fails at its input size: nothing to count (its cells fail
    too, and their rows say why)."""


@dataclass(frozen=True)
class ModelCount:
    config: Network
    params: int
    macs: int  # forward multiply-adds for one image (the paper's "FLOPs")
    train_flops: int  # forward + backward FLOPs for one image, measured (2 per multiply-add)
    by_stage: dict[str, int]  # forward MACs per stage
    uncounted_ops: dict[str, int] = field(default_factory=dict)  # op name -> occurrences
    counter: str = ""
    architecture: dict[str, str] = field(default_factory=dict)  # external models: `networks.architecture`

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def as_dict(self) -> dict:
        return {
            **self.config.spec(),
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "train_flops": self.train_flops,
            "by_stage": self.by_stage,
            "uncounted_ops": self.uncounted_ops,
            "counter": self.counter,
            **({"architecture": self.architecture} if self.architecture else {}),
        }


def _shape(value) -> list[int]:
    return value.type().sizes()


def _numel(value) -> int:
    return math.prod(_shape(value))


def attention_matmul_macs(inputs, outputs) -> int:
    """q.k^T and attn.v: B x heads x Nq x Nk x (d + dv) multiply-adds."""
    *batch, nq, d = _shape(inputs[0])
    nk, dv = _shape(inputs[2])[-2:]
    return math.prod(batch) * nq * nk * (d + dv)


def sdpa_macs(inputs, outputs) -> int:
    """The two attention matmuls, + one op per score for the softmax and one for the bias add."""
    *batch, nq, _ = _shape(inputs[0])
    scores = math.prod(batch) * nq * _shape(inputs[2])[-2]
    has_mask = inputs[3].type().kind() != "NoneType"
    return attention_matmul_macs(inputs, outputs) + scores * (1 + has_mask)


def batched_matmul_macs(inputs, outputs) -> int:
    """batch1 @ batch2 of baddbmm(input, batch1, batch2): B x N x K x M multiply-adds."""
    batch, n, k = _shape(inputs[1])
    return batch * n * k * _shape(inputs[2])[-1]


def baddbmm_macs(inputs, outputs) -> int:
    """input + batch1 @ batch2: the matmul, + one add per output element."""
    return batched_matmul_macs(inputs, outputs) + _numel(outputs[0])


def per_output_element(inputs, outputs) -> int:
    return _numel(outputs[0])


def per_input_element(inputs, outputs) -> int:
    return _numel(inputs[0])


def max_pool_macs(inputs, outputs) -> int:
    """One comparison per window element per output."""
    kernel = [size.toIValue() for size in inputs[1].node().inputs()]  # prim::ListConstruct
    return _numel(outputs[0]) * math.prod(kernel)


# Ops fvcore has no handle for (it would warn and count 0); names as the JIT trace spells them.
EXTRA_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_macs,
    "aten::baddbmm": baddbmm_macs,
    "aten::gelu": per_output_element,
    "aten::sigmoid": per_output_element,
    "aten::softmax": per_output_element,
    "aten::add": per_output_element,
    "aten::add_": per_output_element,
    "aten::mul": per_output_element,
    "aten::mul_": per_output_element,
    "aten::mean": per_input_element,
    "aten::max_pool2d": max_pool_macs,
    # fvcore ignores these (count 0) though each computes every output element: timm's models use them
    "aten::relu": per_output_element,
    "aten::relu_": per_output_element,
    "aten::clamp": per_output_element,
    "aten::clamp_": per_output_element,
    "aten::silu": per_output_element,
    "aten::silu_": per_output_element,
    "aten::hardswish": per_output_element,
    "aten::hardswish_": per_output_element,
    "aten::hardsigmoid": per_output_element,
    "aten::tanh": per_output_element,
    "aten::sub": per_output_element,
    "aten::div": per_output_element,
    "aten::exp": per_output_element,
    "aten::avg_pool2d": per_input_element,
}


def counter_name() -> str:
    return f"fvcore {version('fvcore')} FlopCountAnalysis (MACs) + torch {torch.__version__} flop_counter (train)"


def fvcore_analysis(model: torch.nn.Module, image: torch.Tensor):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, image).set_op_handle(**EXTRA_HANDLES)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis


def conv_backward_flops(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    """FLOPs of aten.convolution_backward: grad-input and grad-weight each cost one forward conv.

    torch's own formula (2.9-2.13) forgets `groups` in the grad-weight term and counts a
    depthwise conv's backward C times over: 48 GFLOP instead of 6 for CoAtNet-0.
    """
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def train_step_flops(model: torch.nn.Module, image: torch.Tensor) -> int:
    """Forward + backward FLOPs of one training step, as torch's FlopCounterMode measures them
    on the meta device (matmuls, convolutions and attention; 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    fixed = {torch.ops.aten.convolution_backward: conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=fixed) as mode:
        model(image).float().logsumexp(-1).sum().backward()
    return mode.get_total_flops()


def _units(model: torch.nn.Module, image: torch.Tensor):
    """(stage, module, input shape, repeats) for every distinct unit of the network: the stem,
    each stage's first block and one of its identical later blocks, the head."""
    shapes: dict[torch.nn.Module, tuple[int, ...]] = {}
    modules = [model.stem, model.head] + [b for stage in model.stages for b in stage.blocks]

    def record(module, args) -> None:
        shapes.setdefault(module, tuple(args[0].shape))

    hooks = [m.register_forward_pre_hook(record) for m in modules]
    with torch.no_grad():
        model(image)  # on the meta device: shapes only
    for hook in hooks:
        hook.remove()
    yield "stem", model.stem, shapes[model.stem], 1
    for i, stage in enumerate(model.stages):
        first, *rest = stage.blocks
        yield f"stage{i + 1}", first, shapes[first], 1
        if rest:
            yield f"stage{i + 1}", rest[0], shapes[rest[0]], len(rest)
    yield "head", model.head, shapes[model.head], 1


def _materialise(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of one meta-device unit with zeroed weights: enough to trace it."""
    unit = copy.deepcopy(module).to_empty(device="cpu")
    with torch.no_grad():
        for tensor in unit.parameters():
            tensor.zero_()
        for sub in unit.modules():
            if isinstance(sub, RelativePositionBias):
                sub.index = sub.relative_index()
            elif isinstance(sub, torch.nn.BatchNorm2d):
                sub.reset_running_stats()
    return unit


def count(config: Network, *, train: bool = True) -> ModelCount:
    """Params and MACs of one image through `config`: a CoAtNet unit by unit, any other network
    whole (`count_module`).

    The whole model lives on the meta device; fvcore's JIT trace cannot run there, so each
    distinct unit (a stage's later blocks are identical) is traced alone on the CPU: the
    largest allocation is one block, never the model.
    """
    if isinstance(config, ExternalModel):
        return count_module(config, train=train)
    model = build_model(config, "meta").eval()
    image = torch.empty(1, 3, config.image_size, config.image_size, device="meta")
    # fvcore logs every uncounted op; they are reported in the result instead.
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    by_stage: Counter[str] = Counter()
    uncounted: Counter[str] = Counter()
    for stage, module, shape, repeats in _units(model, image):
        analysis = fvcore_analysis(_materialise(module), torch.zeros(shape))
        by_stage[stage] += analysis.total() * repeats
        for op, n in analysis.unsupported_ops().items():
            uncounted[op] += n * repeats
    return ModelCount(
        config=config,
        params=sum(p.numel() for p in model.parameters()),
        macs=sum(by_stage.values()),
        train_flops=train_step_flops(model.train(), image) if train else 0,
        by_stage=dict(by_stage),
        uncounted_ops=dict(uncounted),
        counter=counter_name(),
    )


def count_module(network: ExternalModel, *, train: bool = True) -> ModelCount:
    """Params and MACs of one image through an external model, traced whole on the CPU; its
    stages are its top-level children. Training FLOPs are measured on the meta device, or on the
    CPU where the model does not run there."""
    model = build(network, "cpu").eval()
    image = torch.zeros(1, 3, network.image_size, network.image_size)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    try:
        analysis = fvcore_analysis(model, image)
        total = analysis.total()
    except Exception as error:  # the model's own failure at this size
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UncountedModel(f"{network.model} does not run at {network.image_size}px: {first}") from None
    by_module = analysis.by_module()
    by_stage = {name: by_module[name] for name, _ in model.named_children() if by_module.get(name)}
    flops = 0
    if train:
        try:
            flops = train_step_flops(build(network, "meta").train(), image.to("meta"))
        except Exception:  # ops with no meta kernel, or a data-dependent shape: the CPU then
            flops = train_step_flops(model.train(), image)
    return ModelCount(
        config=network,
        params=sum(p.numel() for p in model.parameters()),
        macs=total,
        train_flops=flops,
        by_stage=by_stage,
        uncounted_ops=dict(analysis.unsupported_ops()),
        counter=counter_name(),
        architecture=architecture(network, model),
    )


def count_or_none(config: Network) -> ModelCount | None:
    """`config` counted, or None for an external model that does not run at its input size: its
    cells are measured all the same, and fail with the model's own error in their rows."""
    try:
        return count(config)
    except UncountedModel:
        return None
