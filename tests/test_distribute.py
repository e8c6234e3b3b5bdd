"""TF_CONFIG validation and who writes the model (the training runs themselves: test_training_cli.py)."""

import json
from pathlib import Path

import pytest
import tensorflow as tf

from ecg_app.training.distribute import (
    DistributeConfigError,
    Placement,
    is_chief,
    output_dir,
    parse_tf_config,
)

TWO_WORKERS = {"worker": ["host1:2222", "host2:2222"]}


def tf_config(cluster: dict, task_type: str, index: int) -> dict:
    return parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))


def test_a_well_formed_tf_config_is_returned_parsed():
    assert tf_config(TWO_WORKERS, "worker", 1)["task"] == {"type": "worker", "index": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid JSON"),
        ('["worker"]', "needs a 'cluster' object and a 'task'"),
        ('{"cluster": {"worker": ["h:1"]}}', "needs a 'cluster' object and a 'task'"),
        ('{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}', "'worker' or 'chief' list"),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "list of 'host:port'"),
        ('{"cluster": {"worker": ["h"]}, "task": {"type": "worker", "index": 0}}', "list of 'host:port'"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "ps", "index": 0}}', "'chief' or 'worker'"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker"}}', "task index None"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 1}}', "task index 1"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": true}}', "task index True"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}', "cluster['chief'] (0"),
    ],
)
def test_malformed_tf_config_is_named(text, message):
    with pytest.raises(DistributeConfigError, match="TF_CONFIG") as error:
        parse_tf_config(text)
    assert message in str(error.value)


def test_chief_is_worker_0_unless_the_cluster_names_one():
    assert is_chief(tf_config(TWO_WORKERS, "worker", 0))
    assert not is_chief(tf_config(TWO_WORKERS, "worker", 1))
    with_chief = {"chief": ["host0:2222"], **TWO_WORKERS}
    assert is_chief(tf_config(with_chief, "chief", 0))
    assert not is_chief(tf_config(with_chief, "worker", 0))


def test_only_the_chief_writes_into_out_dir(tmp_path):
    out = tmp_path / "model"
    strategy = tf.distribute.get_strategy()  # the default one: only the placement's TF_CONFIG matters here
    assert output_dir(out, None) == out
    assert output_dir(out, Placement(strategy, None)) == out
    assert output_dir(out, Placement(strategy, tf_config(TWO_WORKERS, "worker", 0))) == out
    scratch = output_dir(out, Placement(strategy, tf_config(TWO_WORKERS, "worker", 1)))
    assert scratch != out and scratch.is_dir() and not out.exists()
    assert Path(scratch).name.startswith("ecg-app-worker1-")
