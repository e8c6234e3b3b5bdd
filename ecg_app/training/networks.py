"""Network architectures, selectable by name: `make_model("default")` or `"seed"`; the curve readers of
the lead-reading diagnosis network.

All take the shared preprocessing's output (an ink map of the trace area) and end in a 5-way softmax
in CLASSES order.
"""

from __future__ import annotations

import keras
from keras import layers

from ecg_app.labels import CLASSES, ECG_CLASSES
from ecg_app.serving.lead_diagnosis import CURVES_SHAPE
from ecg_app.serving.lead_geometry import CURVES
from ecg_app.serving.preprocess import INPUT_SHAPE
from ecg_app.training.lead_signals import LeadSignals

ARCHITECTURES = ("default", "seed")


def make_model(name: str = "default", input_shape: tuple[int, int, int] = INPUT_SHAPE) -> keras.Model:
    builders = {"default": _default, "seed": _seed}
    if name not in builders:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return builders[name](input_shape)


def _seed(input_shape: tuple[int, int, int]) -> keras.Model:
    """The reference design this project started from (224x224x3, three conv blocks, Flatten + Dense 256)."""
    inputs = keras.Input(input_shape, name="ink")
    x = layers.Resizing(224, 224, name="to_224")(inputs)
    x = layers.Concatenate(name="to_rgb")([x, x, x]) if input_shape[-1] == 1 else x
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="seed")


def conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, name: str = ""):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(
        x
    )
    # Momentum 0.9: with ~30 steps an epoch the default 0.99 leaves inference statistics stale for epochs.
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def conv_stages(inputs):
    """The compact trunk shared by the diagnosis network and the ECG detector: a strided stem and four
    pooled stages (16 -> 64 channels), 1/32 of the input size."""
    x = conv_bn(inputs, 16, kernel=5, strides=2, name="stem")
    for stage, filters in enumerate((24, 32, 48, 64), start=1):
        x = conv_bn(x, filters, name=f"s{stage}a")
        if stage > 1:
            x = conv_bn(x, filters, name=f"s{stage}b")
        x = layers.MaxPooling2D(name=f"s{stage}_pool")(x)
    return x


def _default(input_shape: tuple[int, int, int]) -> keras.Model:
    """Compact BatchNorm CNN at 320x544 with a head that keeps where on the page a feature was.

    Global average and max pooling see patterns anywhere; a coarse 5x4 grid of cells keeps rough lead
    position (ST changes matter in specific leads), which a plain global pool would throw away.
    """
    inputs = keras.Input(input_shape, name="ink")
    x = conv_stages(inputs)  # 320x544 -> 10x17
    x = conv_bn(x, 96, name="s5a")
    x = conv_bn(x, 96, name="s5b")
    pooled = [layers.GlobalAveragePooling2D(name="gap")(x), layers.GlobalMaxPooling2D(name="gmp")(x)]
    cells = conv_bn(x, 16, kernel=1, name="cells")
    cells = layers.AveragePooling2D(pool_size=(2, 4), name="cell_pool")(cells)  # 5x4 grid of page cells
    pooled.append(layers.Flatten(name="cell_flat")(cells))
    x = layers.Concatenate(name="features")(pooled)
    x = layers.Dropout(0.4, name="dropout")(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="ecg_cnn")


def _lead_encoder(length: int, width: int = 32) -> keras.Model:
    """One lead cell's curves -> a `width` vector; the same weights read every cell."""
    curves = keras.Input((length, CURVES), name="curves")
    x = curves
    for stage, filters in enumerate((32, 48, 64, 96), start=1):
        for part, kernel in (("a", 7), ("b", 5)):
            x = layers.Conv1D(filters, kernel, padding="same", use_bias=False, name=f"l{stage}{part}_conv")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"l{stage}{part}_bn")(x)
            x = layers.ReLU(name=f"l{stage}{part}_relu")(x)
        x = layers.MaxPooling1D(name=f"l{stage}_pool")(x)
    x = layers.Concatenate(name="lead_pool")(
        [layers.GlobalAveragePooling1D(name="lead_gap")(x), layers.GlobalMaxPooling1D(name="lead_gmp")(x)]
    )
    return keras.Model(curves, layers.Dense(width, activation="relu", name="lead_vector")(x), name="lead")


@keras.saving.register_keras_serializable(package="ecg_app")
class EachCell(layers.Wrapper):
    """(batch, cells, ...) -> (batch, cells, ...): `layer` applied to every cell, as one batch of
    batch x cells. For serving: Keras' `TimeDistributed` traces its layer once per cell when the cell axis
    has a fixed size (16 copies of the lead encoder's graph, 3x slower on 2 cores). Training keeps
    `TimeDistributed`, whose batch normalisation takes each cell's statistics apart (the recipe
    cross-validated in docs/experiments.md); with moving statistics, at inference, both compute the
    same thing."""

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build((None, *input_shape[2:]))
        self.built = True

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], *inner[1:])

    def call(self, cells, training=None):
        flat = self.layer(keras.ops.reshape(cells, (-1, *cells.shape[2:])), training=training)
        return keras.ops.reshape(flat, (-1, cells.shape[1], *flat.shape[1:]))


def lead_features(cells, column_width: int, serving: bool = False):
    """Features of a printout's lead cells (batch, CELLS, column_width, CURVES): one shared 1-D encoder
    reads every cell; every cell's vector is kept in page order (which lead it is), with their maximum
    and mean over cells (a sign seen in any lead, or in all). `serving`: the same network with
    `EachCell` in place of `TimeDistributed` (same weights; for inference only)."""
    each = EachCell if serving else layers.TimeDistributed
    vectors = each(_lead_encoder(column_width), name="per_lead")(cells)
    x = layers.Concatenate(name="features")(
        [
            layers.Flatten(name="lead_flat")(vectors),
            layers.GlobalMaxPooling1D(name="lead_max")(vectors),
            layers.GlobalAveragePooling1D(name="lead_mean")(vectors),
        ]
    )
    return layers.Dropout(0.4, name="dropout")(x)


def make_curve_reader(serving: bool = False):
    """Curves of one printout's 16 lead cells -> probabilities of the four ECG classes (a Keras model).
    `serving`: the inference-only form (`networks.EachCell`), which `diagnosis_fit` saves."""
    cells = keras.Input(CURVES_SHAPE, name="curves")
    outputs = layers.Dense(len(ECG_CLASSES), activation="softmax", name="diagnosis")(
        lead_features(cells, CURVES_SHAPE[1], serving)
    )
    return keras.Model(cells, outputs, name="curve_reader")


def with_lead_signals(*readers):
    """The served network: the shared preprocessing's ink map -> `LeadSignals` -> the reader, or the mean
    of several (an ensemble's readers share one digitiser, which so runs and is traced at start-up once).
    Training digitises each printout once and fits a reader on the curves; this puts the digitiser back."""
    inputs = keras.Input(INPUT_SHAPE, name="ink")
    curves = LeadSignals(name="lead_signals")(inputs)
    if len(readers) == 1:
        return keras.Model(inputs, readers[0](curves), name="lead_diagnosis")
    for k, reader in enumerate(readers):
        reader.name = f"curve_reader_{k}"
    averaged = keras.layers.Average(name="probabilities")([reader(curves) for reader in readers])
    return keras.Model(inputs, averaged, name="ecg_diagnosis")


def curve_readers(diagnosis) -> list:
    """The curve readers inside a served diagnosis network (`with_lead_signals`): one, or an ensemble's."""
    readers = [layer for layer in diagnosis.layers if layer.name.startswith("curve_reader")]
    if not readers:
        raise ValueError(
            f"{diagnosis.name} has no curve reader behind its digitiser (saved in an older layout?): "
            "run `ecg-app model fit-diagnosis` again, which rebuilds it from its members"
        )
    return readers
