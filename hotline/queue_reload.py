"""Hot reload of the queue files into a running contact centre.

Mirrors :mod:`ivr.flow.registry`: :meth:`QueueReloader.reload` loads the whole queues folder
(:func:`hotline.queue_config.load_queue_dir`) and checks it against the flows in service
(:func:`check_references`); a folder with any error is refused, every error is logged and
the configuration in service stays as it was. A valid folder is swapped in queue by queue:

- a new queue is added to the core; its agents join it by skill;
- a changed queue whose routing is the same (strategy, skills, expert widening, aging)
  takes the new settings at once — timeouts, wrap-up, announcements and prompts apply to the
  next event, waiting callers keep their place;
- a queue whose routing changed, or a removed queue, is rebuilt or removed only when no
  caller is in it; otherwise the change is *deferred* (reported, the old queue serves on)
  and the next reload applies it;
- a new agent is added logged out; a removed agent is removed once logged out and idle; an
  agent whose skills or seat changed is deferred the same way.

:meth:`QueueReloader.watch` reloads when a file of the folder changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from watchfiles import Change, awatch

from hotline.queue_config import (
    ContactCenterDefinition,
    QueueDefinition,
    SeatedAgent,
    check_references,
    load_queue_dir,
)
from ivr.flow.model import FlowError, FlowSet

log = structlog.get_logger(__name__)

QUEUE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class QueueReloadReport:
    """What one reload did."""

    swapped: bool  # False: refused, nothing changed
    errors: tuple[FlowError, ...] = ()
    applied: tuple[str, ...] = ()  # "queue general: updated", "agent 1005: added"…
    deferred: tuple[str, ...] = ()  # changes waiting for a queue to empty or an agent to log out


def _same_routing(old: QueueDefinition, new: QueueDefinition) -> bool:
    a, b = old.config, new.config
    return (a.strategy, a.skills, a.expert, a.priority_aging) == (
        b.strategy,
        b.skills,
        b.expert,
        b.priority_aging,
    )


class QueueReloader:
    """Reloads ``folder`` into ``center`` (a :class:`hotline.contact_center.ContactCenter`)."""

    def __init__(
        self,
        center: Any,
        folder: str | Path,
        flows: Callable[[], FlowSet],
        stations: Callable[[], list[str]] | None = None,
    ) -> None:
        self.center = center
        self.folder = Path(folder)
        self.flows = flows  # the flow snapshot in service, for the references check
        self.stations = stations  # station line names; agents seated elsewhere are left out
        self.last_report: QueueReloadReport | None = None

    def reload(self) -> QueueReloadReport:
        definition, errors = load_queue_dir(self.folder)
        if not errors:
            errors = check_references(definition, self.flows())
        if errors:
            for error in errors:
                log.error("queues.problem", file=error.file, line=error.line, reason=error.reason)
            log.error("queues.reload_refused", errors=len(errors), first=str(errors[0]))
            self.last_report = QueueReloadReport(False, tuple(errors))
            return self.last_report
        if self.stations is not None:
            stations = set(self.stations())
            definition.agents = {
                a: s
                for a, s in definition.agents.items()
                if s.seat in stations or s.seat.startswith("sip:")  # SIP seats are kept
            }
        applied: list[str] = []
        deferred: list[str] = []
        self._swap_queues(definition, applied, deferred)
        self._swap_agents(definition, applied, deferred)
        log.info("queues.reloaded", applied=applied, deferred=deferred)
        self.last_report = QueueReloadReport(True, (), tuple(applied), tuple(deferred))
        return self.last_report

    def _swap_queues(
        self, new: ContactCenterDefinition, applied: list[str], deferred: list[str]
    ) -> None:
        acd, queues = self.center.acd, self.center.queues
        for name in sorted(set(queues) - set(new.queues)):
            if acd.queues[name].calls:
                deferred.append(f"queue {name}: removal waits for its callers")
                continue
            acd.remove_queue(name)
            del queues[name]
            applied.append(f"queue {name}: removed")
        for name, definition in sorted(new.queues.items()):
            old = queues.get(name)
            if old == definition:
                continue
            if old is None:
                acd.add_queue(definition.config)
                applied.append(f"queue {name}: added")
            elif _same_routing(old, definition):
                acd.queues[name].config = definition.config  # routing structures unchanged
                applied.append(f"queue {name}: updated")
            elif acd.queues[name].calls:
                deferred.append(f"queue {name}: routing change waits for its callers")
                continue
            else:
                acd.remove_queue(name)
                acd.add_queue(definition.config)
                applied.append(f"queue {name}: rebuilt")
            queues[name] = definition
        self.center.definition.queues = queues

    def _swap_agents(
        self, new: ContactCenterDefinition, applied: list[str], deferred: list[str]
    ) -> None:
        acd, agents = self.center.acd, self.center.definition.agents
        for agent_id, seated in sorted(new.agents.items()):
            old: SeatedAgent | None = agents.get(agent_id)
            if old == seated:
                continue
            if old is not None and not self._remove_agent(agent_id, deferred, "change"):
                continue
            acd.add_agent(seated.to_agent())
            agents[agent_id] = seated
            applied.append(f"agent {agent_id}: {'changed' if old else 'added'}")
        for agent_id in sorted(set(agents) - set(new.agents)):
            if self._remove_agent(agent_id, deferred, "removal"):
                del agents[agent_id]
                applied.append(f"agent {agent_id}: removed")

    def _remove_agent(self, agent_id: str, deferred: list[str], what: str) -> bool:
        agent = self.center.acd.agents.get(agent_id)
        if agent is None:
            return True
        if agent.logged_in or str(agent.state) != "idle":
            deferred.append(f"agent {agent_id}: {what} waits until logged out and idle")
            return False
        self.center.acd.remove_agent(agent_id)
        return True

    async def watch(
        self,
        *,
        on_reload: Callable[[QueueReloadReport], None] | None = None,
        ready: asyncio.Event | None = None,
        debounce_ms: int = 300,
        poll_ms: int = 1000,
    ) -> None:
        """Reload whenever a queue or agents file changes; runs until cancelled."""

        def is_queue_file(change: Change, path: str) -> bool:
            return path.endswith(QUEUE_SUFFIXES)

        async for _changes in awatch(
            self.folder,
            watch_filter=is_queue_file,
            debounce=debounce_ms,
            rust_timeout=poll_ms,
            yield_on_timeout=True,
        ):
            if ready is not None:
                ready.set()
            if not _changes:
                continue
            report = self.reload()
            if on_reload is not None:
                on_reload(report)
