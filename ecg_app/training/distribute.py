"""`ecg-app model train --distribute`: pick a `tf.distribute` strategy from the environment.

One machine (no TF_CONFIG): `MirroredStrategy` over all local GPUs, or the CPU when there are none.
Several machines: every worker runs the same command with its own TF_CONFIG and gets a
`MultiWorkerMirroredStrategy`. The batch size stays global (split across all replicas). Only the chief
writes the model directory; the other workers write theirs to a temporary directory that is removed when
the process exits (the usual Keras/TF multi-worker pattern: every worker runs the same saves, since the
calls must match, but only one copy is kept).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

WORKER_JOBS = ("chief", "worker")
_EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


class DistributeConfigError(ValueError):
    """TF_CONFIG is set but cannot describe this process's place in a training cluster."""


@dataclass(frozen=True)
class Placement:
    """Where this process sits: its strategy and the parsed TF_CONFIG (None on one machine)."""

    strategy: tf.distribute.Strategy
    tf_config: dict | None

    @property
    def is_chief(self) -> bool:
        return self.tf_config is None or is_chief(self.tf_config)

    @property
    def workers(self) -> int:
        cluster = (self.tf_config or {}).get("cluster", {})
        return sum(len(cluster.get(job, [])) for job in WORKER_JOBS) or 1

    def describe(self) -> dict:
        """What model.json records about the run's distribution."""
        return {
            "strategy": "MultiWorkerMirroredStrategy" if self.tf_config else "MirroredStrategy",
            "replicas": int(self.strategy.num_replicas_in_sync),
            "workers": self.workers,
            "task": self.tf_config["task"] if self.tf_config else None,
        }


def patch_keras_for_multi_worker(model: keras.Model, placement: Placement | None) -> None:
    """Work around two Keras 3 bugs (keras-team/keras#20585, still in 3.15.1) that stop `fit` under a
    MultiWorkerMirroredStrategy with more than one worker; one machine and one worker are left untouched.

    1. Before step 1, `fit` `strategy.reduce`s the whole first (x, y) batch only to learn its shapes; the
       collective strategy reduces single tensors only. Take the shapes from this worker's local copy.
    2. Each step reduces the scalar logs with `strategy.reduce("MEAN", v, axis=0)`; a scalar has no axis 0.
       Average them across replicas (axis=None), which is what the one-machine path computes.
    """
    if placement is None or placement.workers == 1:
        return
    strategy = placement.strategy

    def local_copy(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(local_copy, next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build
    if not getattr(tf_trainer.reduce_per_replica, "multi_worker_mean", False):
        keras_reduce = tf_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            if reduction == "auto" and tf_trainer._collective_all_reduce_multi_worker(strategy):
                return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
            return keras_reduce(values, strategy, reduction)

        reduce_per_replica.multi_worker_mean = True  # type: ignore[attr-defined]
        tf_trainer.reduce_per_replica = reduce_per_replica


def parse_tf_config(text: str) -> dict:
    """Validate TF_CONFIG up front: TF's own errors for a bad one come late and are cryptic."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DistributeConfigError(f"TF_CONFIG is not valid JSON ({exc}); e.g. {_EXAMPLE}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or "task" not in config:
        raise DistributeConfigError(f"TF_CONFIG needs a 'cluster' object and a 'task', e.g. {_EXAMPLE}")
    cluster, task = config["cluster"], config["task"]
    if not any(job in cluster for job in WORKER_JOBS):
        raise DistributeConfigError(f"TF_CONFIG's cluster needs a 'worker' or 'chief' list, e.g. {_EXAMPLE}")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(map(_is_address, addresses)):
            raise DistributeConfigError(f"TF_CONFIG's cluster[{job!r}] must be a list of 'host:port' strings")
    if not isinstance(task, dict) or task.get("type") not in WORKER_JOBS:
        raise DistributeConfigError("TF_CONFIG's task needs a 'type' of 'chief' or 'worker'")
    index, count = task.get("index"), len(cluster.get(task["type"], []))
    if type(index) is not int or not 0 <= index < count:
        raise DistributeConfigError(
            f"TF_CONFIG's task index {index!r} is not a position in cluster[{task['type']!r}] "
            f"({count} entries)"
        )
    return config


def _is_address(address: object) -> bool:
    return isinstance(address, str) and address.rpartition(":")[2].isdigit()


def is_chief(tf_config: Mapping) -> bool:
    """The chief is the 'chief' task, or worker 0 when the cluster names no chief."""
    task = tf_config["task"]
    if "chief" in tf_config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


def placement_from_env(environ: Mapping[str, str] = os.environ) -> Placement:
    """MultiWorkerMirroredStrategy when TF_CONFIG is set (validated first), else MirroredStrategy.

    Call it before any other TensorFlow work in the process: collective ops are configured once, at start.
    """
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return Placement(tf.distribute.MirroredStrategy(), None)
    tf_config = parse_tf_config(text)
    return Placement(tf.distribute.MultiWorkerMirroredStrategy(), tf_config)


def output_dir(out_dir: Path, placement: Placement | None) -> Path:
    """`out_dir` for the chief (and without --distribute); a temporary directory for the other workers."""
    if placement is None or placement.is_chief:
        return out_dir
    task = placement.tf_config["task"]  # type: ignore[index]
    scratch = Path(tempfile.mkdtemp(prefix=f"ecg-app-{task['type']}{task['index']}-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return scratch
