"""EfficientNet-Lite0 rebuilt in Keras with the weights package's ImageNet tensors (training.backbone)."""

from __future__ import annotations

import collections
import pickle
import struct
import sys
import types

import cv2
import numpy as np
import pytest
from skimage import data

from ecg_app.training import backbone


class _Storage:
    def __init__(self, array: np.ndarray, key: str):
        self.array, self.key = array, key


def _write_legacy(path, state: dict[str, np.ndarray], monkeypatch) -> None:
    """What `torch.save(state, path, _use_new_zipfile_serialization=False)` writes, without torch: a fake
    `torch` module stands in for the classes the pickle names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    storage_types = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}
    for name in storage_types.values():
        setattr(torch, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class Tensor:
        def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple):
            self.args = (storage, offset, shape, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return _rebuild_tensor_v2, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                kind = getattr(torch, storage_types[obj.array.dtype])
                return ("storage", kind, obj.key, "cpu", obj.array.size, None)
            return None

    storages, tensors = [], collections.OrderedDict()
    for i, (name, array) in enumerate(state.items()):
        array = np.array(array, order="C")  # (ascontiguousarray would make a scalar one-dimensional)
        storage = _Storage(array.ravel(), str(i))
        storages.append(storage)
        strides = tuple(s // array.itemsize for s in array.strides)
        tensors[name] = Tensor(storage, 0, array.shape, strides)
    # A transposed view of the first storage: strides other than C order must be honoured.
    first = next(iter(state.values()))
    if first.ndim == 2:
        tensors["transposed"] = Tensor(storages[0], 0, first.shape[::-1], (1, first.shape[1]))
    with open(path, "wb") as handle:
        pickle.dump(0x1950A86A20F9469CFC6C, handle, protocol=2)
        pickle.dump(1001, handle, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, handle, protocol=2)
        Pickler(handle, protocol=2).dump(tensors)
        pickle.dump([s.key for s in storages], handle, protocol=2)
        for s in storages:
            handle.write(struct.pack("<q", s.array.size))
            handle.write(s.array.tobytes())


def test_reader_gives_back_what_was_written(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    state = {
        "conv.weight": rng.normal(size=(4, 3)).astype(np.float32),
        "bn.running_var": rng.uniform(size=(7,)).astype(np.float32),
        "bn.num_batches_tracked": np.array(12, np.int64),
    }
    path = tmp_path / "small.pth"
    _write_legacy(path, state, monkeypatch)
    read = backbone.read_legacy_torch(path)
    assert set(read) == {*state, "transposed"}
    for name, array in state.items():
        assert read[name].dtype == array.dtype and read[name].shape == array.shape
        np.testing.assert_array_equal(read[name], array)
    np.testing.assert_array_equal(read["transposed"], state["conv.weight"].T)


def test_reader_refuses_anything_but_tensors(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, handle, protocol=2)
        pickle.dump({"x": types.SimpleNamespace()}, handle, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        backbone.read_legacy_torch(path)
    path.write_bytes(pickle.dumps(123, protocol=2))
    with pytest.raises(ValueError, match="magic"):
        backbone.read_legacy_torch(path)


@pytest.fixture(scope="module")
def imagenet_model():
    state = backbone.read_legacy_torch(backbone.weights_path())
    model = backbone.make_lite0()
    used = backbone.load_imagenet_weights(model, state)
    return model, state, used


def test_every_tensor_is_mapped(imagenet_model):
    model, state, used = imagenet_model
    assert len(used) == len(set(used))
    assert set(used) == {k for k in state if not k.endswith("num_batches_tracked")}
    assert model.count_params() == sum(state[k].size for k in used)
    # One kernel checked by hand: PyTorch OIHW -> Keras HWIO.
    kernel = model.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(kernel[1, 2, 0, 5], state["_conv_stem.weight"][5, 0, 1, 2])


def _centre_224(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return cv2.resize(rgb[top : top + side, left : left + side], (224, 224), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    ("picture", "expected"),
    [
        ("chelsea", {281, 282, 285}),  # tabby, tiger cat, Egyptian cat
        ("coffee", {967}),  # espresso
    ],
)
def test_imagenet_head_knows_bundled_photos(imagenet_model, picture, expected):
    model, _, _ = imagenet_model
    photo = _centre_224(getattr(data, picture)())[None].astype(np.float32)
    probabilities = model.predict(photo, verbose=0)[0]
    top5 = set(np.argsort(probabilities)[::-1][:5].tolist())
    assert int(probabilities.argmax()) in expected
    assert expected <= top5


def test_cut_model_shares_the_whole_models_features(imagenet_model):
    model, _, _ = imagenet_model
    cut = backbone.pretrained_lite0((224, 224, 3), cut=10)
    assert cut.output.shape[1:] == (14, 14, 112)  # stride 16, stage 5's channels
    x = _centre_224(data.coffee())[None].astype(np.float32)
    inner = model.get_layer("block10_add").output
    expected = cut.__class__(model.inputs, inner).predict(x, verbose=0)
    np.testing.assert_allclose(cut.predict(x, verbose=0), expected, atol=1e-5)
    # The same features again, from block 8 on, given block 7's output: what training on cached
    # features relies on.
    first = cut.__class__(cut.inputs, cut.get_layer("block7_add").output)
    rest = backbone.pretrained_lite0((14, 14, 80), cut=10, start=8)
    np.testing.assert_allclose(rest.predict(first.predict(x, verbose=0), verbose=0), expected, atol=1e-5)
    for bad in ({"cut": 16}, {"cut": 3, "start": 4}):
        with pytest.raises(ValueError, match="block indices"):
            backbone.make_lite0(**bad)
