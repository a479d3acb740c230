"""A partition-aware IO manager for the frames passed along the asset chain.

A run may cover many project partitions (the 60 s tick covers all of them). Each output is a
frame, or a dict of frames, with a ``project_id`` column; it is stored split by project, one
pickle per (asset, project), so a later run or a backfill of some projects loads exactly the
projects it needs. A dict entry that is not a frame (run-wide facts, such as the app's live
projects) is stored whole with every project. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pandas as pd

_SINGLE = "__frame__"


class ProjectFramesIOManager(dg.ConfigurableIOManager):
    """Env: RECONCILE_FRAMES_DIR (default: <DAGSTER_HOME>/storage/reconcile_frames)."""

    base_dir: str = ""

    def _dir(self, context: dg.OutputContext | dg.InputContext) -> Path:
        if self.base_dir:
            root = Path(self.base_dir)
        else:
            instance = (
                context.instance
                if isinstance(context, dg.InputContext)
                else context.step_context.instance
            )
            root = Path(instance.storage_directory()) / "reconcile_frames"
        return root / "__".join(context.asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | Mapping) -> None:
        frames = {_SINGLE: obj} if isinstance(obj, pd.DataFrame) else dict(obj)
        projects = list(context.asset_partition_keys) if context.has_asset_partitions else ["_all"]
        directory = self._dir(context)
        directory.mkdir(parents=True, exist_ok=True)
        split = {
            name: dict(tuple(frame.groupby("project_id", sort=False))) if len(frame) else {}
            for name, frame in frames.items()
            if isinstance(frame, pd.DataFrame)
        }
        whole = {name: v for name, v in frames.items() if not isinstance(v, pd.DataFrame)}
        for project in projects:
            part = {
                name: (
                    by_project.get(project, frames[name].iloc[0:0])
                    if project != "_all"
                    else frames[name]
                )
                for name, by_project in split.items()
            }
            part.update(whole)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
            os.close(fd)
            pd.to_pickle(part, tmp)
            os.replace(tmp, directory / f"{_safe(project)}.pkl")
        context.add_output_metadata({"projects_stored": len(projects)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        projects = list(context.asset_partition_keys) if context.has_asset_partitions else ["_all"]
        directory = self._dir(context)
        parts = []
        for project in projects:
            path = directory / f"{_safe(project)}.pkl"
            if not path.exists():
                raise FileNotFoundError(
                    f"{context.asset_key.to_user_string()} has no stored output for project "
                    f"{project!r}: materialize it for that partition first"
                )
            parts.append(pd.read_pickle(path))
        names = list(parts[0])
        merged = {
            name: pd.concat([p[name] for p in parts], ignore_index=True)
            if len(parts) > 1 and isinstance(parts[0][name], pd.DataFrame)
            else parts[-1][name]
            for name in names
        }
        return merged[_SINGLE] if names == [_SINGLE] else merged


def _safe(key: str) -> str:
    # Partition keys are app ids; keep file names boring whatever they contain.
    return "".join(c if c.isalnum() or c in "-_" else f"%{ord(c):02x}" for c in key)
