"""The registry of validated flows, with hot reload.

:class:`FlowRegistry` loads and validates every flow file of its directories and installs the
result as one immutable :class:`~ivr.flow.model.FlowSet` snapshot. A new call takes
:attr:`FlowRegistry.current` and keeps that snapshot to its end, so a reload never changes a
call in progress. A reload whose files have any error is refused: every error is logged and
the previous snapshot keeps serving. :meth:`FlowRegistry.watch` reloads when files change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog
from watchfiles import Change, awatch

from ivr.flow.loader import FLOW_SUFFIXES, flow_files, load_flow_dir
from ivr.flow.model import FlowError, FlowSet
from ivr.flow.validate import validate

log = structlog.get_logger(__name__)


def load_flows(
    paths: str | Path | Iterable[str | Path], services: frozenset[str] | None = None
) -> tuple[FlowSet, list[FlowError]]:
    """Load and validate flows; errors and warnings together, sorted by file and line."""
    flowset, errors = load_flow_dir(paths)
    problems = set(errors) | set(validate(flowset, services))
    return flowset, sorted(problems, key=FlowError.sort_key)


def check_paths(
    paths: Iterable[str | Path], services: frozenset[str] | None = None
) -> tuple[int, list[FlowError]]:
    """Check flow files as the engine loads them: (how many files, their errors).

    Warnings are left out (they never stop a load); :func:`load_flows` returns them too.
    """
    paths = list(paths)
    _, problems = load_flows(paths, services)
    return len(flow_files(paths)), [p for p in problems if p.is_error]


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What one (re)load did: whether it swapped snapshots, and every error and warning."""

    swapped: bool
    problems: tuple[FlowError, ...]
    generation: int  # the generation serving after this reload (0: none yet)

    @property
    def errors(self) -> list[FlowError]:
        return [p for p in self.problems if p.is_error]


class FlowRegistry:
    """Validated flow snapshots for new calls, reloaded from ``dirs`` on demand or on change."""

    def __init__(
        self, dirs: str | Path | Iterable[str | Path], services_names: frozenset[str] | None = None
    ) -> None:
        self.dirs = [Path(dirs)] if isinstance(dirs, str | Path) else [Path(d) for d in dirs]
        self.services_names = services_names
        self._current: FlowSet | None = None
        self._generation = 0
        self.last_report: ReloadReport | None = None

    @property
    def current(self) -> FlowSet:
        """The snapshot a new call should use. Raises LookupError before a good load."""
        if self._current is None:
            raise LookupError(f"no valid flows loaded from {', '.join(map(str, self.dirs))}")
        return self._current

    @property
    def generation(self) -> int:
        """How many snapshots have been installed (0: none yet)."""
        return self._generation

    def prompt_texts(self) -> dict[str, str]:
        """Prompt id → text of the current snapshot (for synthesizing prompts ahead of calls)."""
        return dict(self.current.prompts())

    def load(self) -> list[FlowError]:
        """Load every flow file; install the new snapshot unless one has an error.

        Returns the errors (empty when the snapshot was installed). Warnings never stop a
        load; they are logged and kept with the errors in :attr:`last_report`.
        """
        return self._reload().errors

    def reload(self) -> list[FlowError]:
        """Reload by hand; the old snapshot keeps serving if any file has an error."""
        return self._reload().errors

    def _reload(self) -> ReloadReport:
        flowset, problems = load_flows(self.dirs, self.services_names)
        errors = [p for p in problems if p.is_error]
        for problem in problems:
            emit = log.error if problem.is_error else log.warning
            emit(
                "flows.problem",
                file=problem.file,
                line=problem.line,
                column=problem.column,
                reason=problem.reason,
                severity=problem.severity,
            )
        if errors:
            log.error(
                "flows.reload_refused",
                errors=len(errors),
                serving_generation=self._generation,
                first=str(errors[0]),
            )
            self.last_report = ReloadReport(False, tuple(problems), self._generation)
            return self.last_report
        self._current = flowset
        self._generation += 1
        log.info("flows.loaded", flows=sorted(flowset), generation=self._generation)
        self.last_report = ReloadReport(True, tuple(problems), self._generation)
        return self.last_report

    async def watch(
        self,
        *,
        on_reload: Callable[[ReloadReport], None] | None = None,
        ready: asyncio.Event | None = None,
        debounce_ms: int = 300,
        poll_ms: int = 1000,
        force_polling: bool | None = None,
    ) -> None:
        """Reload whenever a flow file under the directories changes; runs until cancelled.

        ``ready`` is set once the file watcher is running; ``on_reload`` receives the report
        of every reload it triggers. ``poll_ms`` bounds how long the watcher thread waits
        before checking in (and so how soon ``ready`` is set).
        """

        def is_flow_file(change: Change, path: str) -> bool:
            return path.endswith(FLOW_SUFFIXES)

        async for changes in awatch(
            *self.dirs,
            watch_filter=is_flow_file,
            debounce=debounce_ms,
            rust_timeout=poll_ms,
            yield_on_timeout=True,
            force_polling=force_polling,
            recursive=False,
        ):
            if ready is not None and not ready.is_set():
                ready.set()
            if not changes:
                continue
            log.info("flows.changed", files=sorted(path for _, path in changes))
            report = self._reload()
            if on_reload is not None:
                on_reload(report)
