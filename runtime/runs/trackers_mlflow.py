"""The MLflow side of the trackers (`[logging] mlflow`); runs on the tracker thread.

One MLflow run per run directory: trackers.json keeps its id and tracking URI, and
every attempt continues it. MLflow keeps every point it is given, so what a
resumed attempt must not send again is asked of the run itself (the last step of
each metric): MLflow writes a batch before it returns, so its history is exact
where any bookkeeping of ours could be one batch behind a kill.

The plan becomes the run's params (the resolved spec, one dotted key each) and its
`plan.json` artifact; the fingerprints and the environment class its tags; the
events tags `expspec.event.<name>` and, at the end of each attempt, the artifact
`events.jsonl`; an audit's verdicts tags `expspec.audit.<check>` and `audit.json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from expspec.runtime.runs.run_files import RunFiles
from expspec.runtime.runs.trackers import TrackedRun

__all__ = ["MlflowTracker", "tracking_uri"]

_PARAM_CHARS = 500
"""The longest param value every MLflow server takes (the full plan is the `plan.json` artifact)."""
_TAG_CHARS = 5000
_BATCH = 100
"""Params per `log_batch` (MLflow's limit); metrics go 1000 at a time."""
_NOT_SHOWN = frozenset({"event", "time", "traceback"})
_STATUS = {"finished": "FINISHED", "stopped": "KILLED", "preempted": "KILLED"}
"""An attempt's end as MLflow's run status (an error, or no end recorded: FAILED)."""


def tracking_uri(written: str | None, spec_dir: Path) -> str:
    """The spec's tracking URI with a relative `file:` folder made absolute (against the spec's
    folder); MLflow's own default when unset. A file store is what the spec (or MLflow's default)
    asks for: MLflow 3's refusal of one (it prefers a database) is turned off for this process."""
    import mlflow

    uri = mlflow.get_tracking_uri() if written is None else written
    parsed = urlparse(uri)
    if parsed.scheme in ("file", ""):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if parsed.scheme == "file" and not parsed.netloc and not Path(parsed.path).is_absolute():
        return (spec_dir / parsed.path).absolute().as_uri()
    return uri


def _flat(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flat(f"{prefix}.{key}" if prefix else str(key), item)
        return
    text = value if isinstance(value, str) else json.dumps(value)
    yield prefix, text if len(text) <= _PARAM_CHARS else text[: _PARAM_CHARS - 3] + "..."


class MlflowTracker:
    """An MLflow run continued by every attempt of one run directory."""

    key = "mlflow"

    def __init__(self, files: RunFiles) -> None:
        self.files = files
        self._client: Any = None
        self._run_id = ""

    def open(self, run: TrackedRun, state: dict[str, Any], save: Callable[[], None]) -> dict[str, int]:
        from mlflow.tracking import MlflowClient

        spec = run.logging["mlflow"]
        uri = tracking_uri(spec["tracking_uri"], run.spec_dir)
        client = self._client = MlflowClient(tracking_uri=uri)
        found = self._existing(client, state) if state.get("tracking_uri") == uri else None
        tags = {f"expspec.{name}": value for name, value in run.tags.items()}
        tags["expspec.run_dir"] = str(run.files.root.absolute())
        if found is None:
            experiment = spec["experiment"] or run.plan["spec"]["name"]
            name = spec["run_name"] or run.files.root.absolute().name
            created = client.create_run(self._experiment(client, experiment), run_name=name, tags=tags)
            self._run_id = created.info.run_id
            state.clear()
            state.update(run_id=self._run_id, tracking_uri=uri, experiment_id=created.info.experiment_id)
            save()
            held, params = {}, {}
        else:
            self._run_id = found.info.run_id
            client.update_run(self._run_id, status="RUNNING")
            client.log_batch(self._run_id, tags=self._tags(tags))
            held, params = self._held(client, found), found.data.params
        # A param cannot change once logged: a resumed attempt adds only new keys (plan.json has all).
        from mlflow.entities import Param

        new = [Param(key, value) for key, value in _flat("", run.plan["spec"]) if key not in params]
        for i in range(0, len(new), _BATCH):
            client.log_batch(self._run_id, params=new[i : i + _BATCH])
        client.log_dict(self._run_id, run.plan, "plan.json")
        client.log_dict(self._run_id, run.env, "env.json")
        return held

    @staticmethod
    def _existing(client: Any, state: dict[str, Any]) -> Any:
        """The run trackers.json names, if the store still has it (not deleted)."""
        from mlflow.exceptions import MlflowException

        if not state.get("run_id"):
            return None
        try:
            found = client.get_run(state["run_id"])
        except MlflowException:
            return None
        return found if found.info.lifecycle_stage == "active" else None

    @staticmethod
    def _experiment(client: Any, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(client.create_experiment(name))
        except MlflowException:  # created meanwhile by another run of a sweep
            return str(client.get_experiment_by_name(name).experiment_id)

    @staticmethod
    def _tags(tags: dict[str, str]) -> list[Any]:
        from mlflow.entities import RunTag

        return [RunTag(key, value[:_TAG_CHARS]) for key, value in tags.items()]

    def _held(self, client: Any, found: Any) -> dict[str, int]:
        """The last step of each metric the run holds: one batch's metrics are written one by
        one, so a kill can leave some of a step's and not the others."""
        held: dict[str, int] = {}
        for key in found.data.metrics:
            for metric in client.get_metric_history(self._run_id, key):
                held[key] = max(held.get(key, -1), metric.step)
        return held

    def metrics(self, records: list[tuple[str, int, dict[str, float], float | None]]) -> None:
        from mlflow.entities import Metric

        points = [
            Metric(key, value, int((moment or time.time()) * 1000), step)
            for _, step, values, moment in records
            for key, value in values.items()
        ]
        for i in range(0, len(points), 1000):
            self._client.log_batch(self._run_id, metrics=points[i : i + 1000])

    def event(self, record: dict[str, Any]) -> None:
        fields = {key: value for key, value in record.items() if key not in _NOT_SHOWN}
        text = json.dumps(fields, sort_keys=True, default=str)
        self._client.set_tag(self._run_id, f"expspec.event.{record.get('event')}", text[:_TAG_CHARS])

    def close(self, outcome: str | None) -> None:
        self._client.set_tag(self._run_id, "expspec.outcome", outcome or "unended")
        if self.files.events.is_file():
            self._client.log_artifact(self._run_id, str(self.files.events))
        self._client.set_terminated(self._run_id, status=_STATUS.get(outcome or "", "FAILED"))

    def attach_verdicts(self, state: dict[str, Any], spec: dict[str, Any], verdicts: list[dict[str, Any]]) -> None:
        from mlflow.tracking import MlflowClient

        tracking_uri(state["tracking_uri"], Path.cwd())  # the file store's opt-in, when it is one
        client = MlflowClient(tracking_uri=state["tracking_uri"])
        run_id = state["run_id"]
        tags = {f"expspec.audit.{v['check']}": str(v["status"]) for v in verdicts}
        client.log_batch(run_id, tags=self._tags(tags))
        client.log_dict(run_id, {"verdicts": verdicts}, "audit.json")
