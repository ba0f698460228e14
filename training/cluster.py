"""This process's place in a TFJob cluster, read from `TF_CONFIG` and checked up front: a
worker started with a bad TF_CONFIG would otherwise wait forever for peers that never come."""

from __future__ import annotations

import json
from dataclasses import dataclass

from summarizer.errors import UserError

ROLES = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    index: int  # this process among all training processes: the chief first, then the workers
    workers: int  # training processes in the cluster, the chief included

    @property
    def is_chief(self) -> bool:
        """Worker 0 is the chief: with a "chief" task, that task; otherwise worker index 0."""
        return self.index == 0


def parse_tf_config(text: str) -> Cluster:
    """The cluster TF_CONFIG describes: {"cluster": {"worker": ["host:port", ...], "chief":
    [...]}, "task": {"type": "worker", "index": 0}}."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG is not valid JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise UserError('TF_CONFIG needs a "cluster" object, e.g. {"cluster": {"worker": '
                        '["host:port", ...]}, "task": {"type": "worker", "index": 0}}')
    cluster, task = config["cluster"], config.get("task")
    other = sorted(set(cluster) - set(ROLES))
    if other:
        raise UserError(f"TF_CONFIG cluster has {', '.join(other)} tasks; MultiWorkerMirroredStrategy "
                        "trains with chief and worker tasks only")
    for role in ROLES:
        addresses = cluster.get(role, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise UserError(f'TF_CONFIG cluster "{role}" must be a list of "host:port" addresses')
    if len(cluster.get("chief", [])) > 1:
        raise UserError('TF_CONFIG cluster "chief" holds more than one address')
    if not isinstance(task, dict) or task.get("type") not in ROLES:
        raise UserError('TF_CONFIG needs a "task" object with "type" "chief" or "worker"')
    index, members = task.get("index", 0), cluster.get(task["type"], [])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(members):
        raise UserError(f"TF_CONFIG task index {index!r} is out of range: the cluster has "
                        f"{len(members)} {task['type']} task(s)")
    chiefs = len(cluster.get("chief", []))
    return Cluster(index=index if task["type"] == "chief" else chiefs + index,
                   workers=chiefs + len(cluster.get("worker", [])))
