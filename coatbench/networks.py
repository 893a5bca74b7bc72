"""What a cell measures, built: the paper's CoAtNet (`coatbench.model`), a timm model, or the
nn.Module that a factory returns. `resolve` checks an external model before anything is measured
(its name, its factory, its kwargs) and fills in its input size and classes; `build` makes it on
a device; `architecture` describes it for a report's "what differs".
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib
import inspect
import json
from collections import Counter
from collections.abc import Callable

import torch
from torch import nn

from coatbench.config import CoAtNetConfig, ExternalModel, Network
from coatbench.errors import CoatbenchError
from coatbench.model import build_model

FACTORY_IMAGE_SIZE = 224  # a factory's input size when the row names none (timm's come from its config)
TIMM_MISSING = "timm is not installed: pip install 'coatbench[timm]' (timm and its torchvision, for your torch)"


def _timm():
    try:
        import timm
    except ImportError as error:  # timm itself, or the torchvision it imports, is missing or broken
        raise CoatbenchError(f"{TIMM_MISSING} ({error})") from None
    return timm


def _factory(model: ExternalModel) -> Callable[..., object]:
    module_name, _, function = model.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module: any error of its own is theirs to fix
        raise CoatbenchError(
            f"factory {model.model}: module {module_name!r} does not import ({type(error).__name__}: {error}): "
            "check the name and that it is on PYTHONPATH"
        ) from None
    factory = getattr(module, function, None)
    if not callable(factory):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        close = difflib.get_close_matches(function, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CoatbenchError(f"factory {model.model}: {module_name} has no function {function!r}{hint}")
    return factory


def _timm_name(model: ExternalModel) -> str:
    timm = _timm()
    name = model.target
    if not timm.is_model(name):  # (list_models, a scan of every name, only for the suggestion)
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.5)
        hint = f": did you mean {', '.join('timm:' + c for c in close)}?" if close else ": see timm.list_models()"
        raise CoatbenchError(f"unknown timm model {name!r}{hint}")
    return name


def build(network: Network, device: torch.device | str | None = None) -> nn.Module:
    """`network` on `device` (the meta device allocates nothing), with random weights."""
    if isinstance(network, CoAtNetConfig):
        return build_model(network, device)
    with torch.device(device or "cpu"):
        if network.is_timm:
            timm = _timm()
            return _call(lambda **kw: timm.create_model(_timm_name(network), pretrained=False, **kw), network)
        return _call(_factory(network), network)


class FactoryFailed(CoatbenchError):
    """An external model's constructor raised: said in one line, with what it raised."""


def _call(factory: Callable[..., object], model: ExternalModel) -> nn.Module:
    """`factory(**kwargs)`, with a refused keyword said as such and its result checked."""
    try:  # a factory's own signature says which kwargs it takes (timm's: its model class, below)
        inspect.signature(factory).bind(**model.kwargs)
    except TypeError as error:
        raise CoatbenchError(f"{model.model} refuses its kwargs {model.kwargs_json}: {error}") from None
    try:
        built = factory(**model.kwargs)
    except CoatbenchError:
        raise
    except Exception as error:  # the model's own code: what it raised, in one line
        if model.is_timm and isinstance(error, TypeError) and "argument" in str(error):
            raise CoatbenchError(f"{model.model} refuses its kwargs {model.kwargs_json}: {error}") from None
        first = (str(error).strip().splitlines() or [""])[0][:160]
        raise FactoryFailed(f"{model.model} raised {type(error).__name__} while being built: {first}") from None
    if not isinstance(built, nn.Module):
        raise CoatbenchError(
            f"{model.model} returned {type(built).__name__} {built!r:.40}, not a torch.nn.Module: return the model"
        )
    return built


def resolve(network: Network) -> Network:
    """`network` as it will be measured: an external model checked (it builds, with its kwargs),
    with its input size (timm's pretrained config; 224 for a factory) and its classes (the width
    of its output on one image, on the meta device; None if the forward fails there and on the
    CPU, in which case the cell's forward fails too and its row says why)."""
    if isinstance(network, CoAtNetConfig) or (network.image_size and network.num_classes):
        return network
    try:
        model = build(network, "meta")
    except FactoryFailed:  # perhaps only on the meta device (a value read from a tensor)
        model = build(network, "cpu")
    size = network.image_size or _own_image_size(model, network)
    classes = getattr(model, "num_classes", None) if network.is_timm else None
    if not isinstance(classes, int) or classes < 1:
        classes = _output_width(network, model, size)
    return dataclasses.replace(network, image_size=size, num_classes=classes)


def _own_image_size(model: nn.Module, network: ExternalModel) -> int:
    config = getattr(model, "pretrained_cfg", None) or {}
    shape = config.get("input_size") if network.is_timm else None
    if shape is None:
        return FACTORY_IMAGE_SIZE
    _, height, width = shape
    if height != width:
        raise CoatbenchError(f"{network.model} takes {height}x{width} images: give a square --image-size")
    return int(height)


def _output_width(network: ExternalModel, meta: nn.Module, size: int) -> int | None:
    for device, model in (("meta", meta), ("cpu", None)):
        try:
            with torch.no_grad():
                model = model if model is not None else build(network, device)
                out = model.eval()(torch.zeros(1, 3, size, size, device=device))
        except Exception:  # the model's own failure at this size: its cells' rows will say it
            continue
        if isinstance(out, torch.Tensor) and out.dim() == 2:
            return int(out.shape[-1])
    return None


def architecture(network: Network, model: nn.Module) -> dict[str, str]:
    """What the report compares between two external models, as "field: value" lines: a timm
    model's architecture config (its module's `model_cfgs` entry, field by field), a factory's
    kwargs, and for both how many modules of each kind the built network holds. CoAtNet: {} (its
    knobs say it)."""
    if isinstance(network, CoAtNetConfig):
        return {}
    described = {f"kwargs.{k}": json.dumps(v) for k, v in sorted(network.kwargs.items())}
    if network.is_timm:
        config = _timm_config(network.target, model)
        described |= {f"config.{k}": v for k, v in _flat(config).items()} if config is not None else {}
    kinds = Counter(type(m).__name__ for m in model.modules())
    described |= {f"modules.{kind}": str(n) for kind, n in sorted(kinds.items())}
    return described


def _timm_config(name: str, model: nn.Module):
    """The architecture config a timm family builds `name` from, if it keeps one by name (maxxvit,
    byobnet, ...: `model_cfgs[variant]`, the variant the name less its last `_` part)."""
    configs = getattr(inspect.getmodule(type(model)), "model_cfgs", None)
    if not isinstance(configs, dict):
        return None
    for key in (name, name.rsplit("_", 1)[0]):
        if key in configs:
            return configs[key]
    return None


def _flat(value, prefix: str = "") -> dict[str, str]:
    """A config's leaves as "a.b: repr", for a field-by-field diff."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out |= _flat(item, f"{prefix}{key}.")
        return out
    text = value.value if isinstance(value, enum.Enum) else value
    return {prefix.rstrip("."): str(text)}
