"""Engine configuration: embedded defaults, overridable by a YAML file and the environment.

The defaults run the whole engine on one machine with nothing to set up: SQLite under
``var/``, the simulated board with 8 trunk and 4 station lines, flows from ``flows/``,
recordings under ``recordings/``, demo data generated on first start.

A site file (``hotline.yaml``, or the path in ``HOTLINE_CONFIG``) overrides any of it::

    database_url: postgresql+asyncpg://hotline@db/hotline
    recordings_dir: /srv/hotline/recordings
    board:
      trunks: 30
      lines:
        t1: {flow: main, hangup_signal: busy, busy_cycles: 3}
    numbers: {"95598": main}
    sip: {host: 0.0.0.0, port: 5060}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The configuration file is unreadable or has a wrong key or value."""


@dataclass(slots=True)
class LineSettings:
    flow: str | None = None  # None: the board's default flow
    hangup_signal: str = "loop"  # loop | busy | polarity
    busy_cycles: int = 3


@dataclass(slots=True)
class BoardSettings:
    enabled: bool = True
    trunks: int = 8
    stations: int = 4
    default_flow: str = "main"
    answer_after_rings: int = 1  # 95598 rule: answer within 4 rings
    lines: dict[str, LineSettings] = field(default_factory=dict)


@dataclass(slots=True)
class ControlSettings:
    """The simulated board's control socket, used by ``hotline sim`` from another shell."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5599


@dataclass(slots=True)
class TrunkSettings:
    """One upstream PBX/SIP trunk the engine registers to (``sip.trunks``; docs/sip.md)."""

    name: str
    registrar: str  # host:port REGISTERs go to
    user: str  # address-of-record user (and auth user unless auth_user is set)
    password: str | None = None
    password_env: str | None = None  # read the password from this environment variable
    domain: str | None = None  # AOR and Request-URI domain; None: the registrar's host
    expires: int = 600
    contact_user: str | None = None  # the number the trunk calls the engine on; None: user
    auth_user: str | None = None
    contact_host: str | None = None  # the engine's address for the trunk; None: sip.host


@dataclass(slots=True)
class SipSettings:
    """The SIP endpoint callers dial (see docs/sip.md); port 0 binds any free port."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5060
    rtp_port_min: int = 0  # RTP ports for calls; 0 and 0: any port the OS gives
    rtp_port_max: int = 0
    answer_after: float = 0.5  # seconds of ringing (180) before the 200 OK
    trunks: list[TrunkSettings] = field(default_factory=list)  # upstream registrations
    invite_rate: float = 50.0  # new INVITEs per second per source address (then 503)
    invite_burst: int = 100  # INVITEs a source may send at once before the rate applies
    register_rate: float = 5.0  # REGISTERs per second per source address
    register_burst: int = 20
    # besides registered agent seats, the only SIP URIs the engine may ever call (toll fraud)
    outbound_allowed: list[str] = field(default_factory=list)
    keepalive_interval: float = 30.0  # seconds between OPTIONS to each registered seat
    keepalive_failures: int = 3  # unanswered keepalives in a row that unregister a seat
    # digest challenges offered to seats registering, in order; [MD5] for baresip 1.0
    digest_algorithms: list[str] = field(default_factory=lambda: ["SHA-256", "MD5"])
    # accept RFC 4733 telephone-event from callers; false: keys only as in-band tones
    rfc4733: bool = True


@dataclass(slots=True)
class SpeechSettings:
    engine: str = "espeak"  # espeak | pyttsx3
    voice: str = "cmn-latn-pinyin"
    readout: str = "units"  # units | tts
    units_dir: str | None = None  # None: the generated unit set shipped with the engine
    recorded_prompts_dir: str = "prompts"


@dataclass(slots=True)
class ApiSettings:
    """The agent control API: HTTP + WebSocket for agent desktops (docs/agent_api.md)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8598
    token_ttl: float = 8 * 3600.0  # seconds a login token stays valid
    max_failures: int = 5  # failed logins (per user name, per address) before a lockout
    lockout: float = 300.0  # seconds of lockout; also the window failures are counted in


@dataclass(slots=True)
class AcdSettings:
    """Queues and agent seats (see docs/acd.md, "Queues and seats on the engine")."""

    enabled: bool = True
    queues_dir: str = "queues"  # queue files and agents.yaml; missing folder: no queues
    login_at_start: bool = True  # log every agent of agents.yaml in, ready (demo)
    agent_announcement: str = "工号{agent_id}为您服务。"  # 报工号; "" to switch it off
    seed: int = 0  # the random strategy's generator


@dataclass(slots=True)
class Config:
    root: Path = field(default_factory=Path.cwd)
    database_url: str = "sqlite+aiosqlite:///var/hotline.db"
    recordings_dir: str = "recordings"
    cache_dir: str = "var/cache"
    flows_dirs: list[str] = field(default_factory=lambda: ["flows"])
    demo_data: bool = True
    log_format: str = "console"  # console | json
    board: BoardSettings = field(default_factory=BoardSettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    sip: SipSettings = field(default_factory=SipSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    acd: AcdSettings = field(default_factory=AcdSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    numbers: dict[str, str] = field(default_factory=lambda: {"95598": "main"})

    def path(self, value: str) -> Path:
        """A configured path, relative to the root unless absolute."""
        p = Path(value)
        return p if p.is_absolute() else self.root / p

    @property
    def database(self) -> str:
        """The database URL with a relative SQLite path made absolute under the root."""
        prefix = "sqlite+aiosqlite:///"
        if self.database_url.startswith(prefix):
            rest = self.database_url[len(prefix) :]
            if rest and rest != ":memory:" and not rest.startswith("/"):
                return prefix + str(self.path(rest))
        return self.database_url

    def flow_for_line(self, line: str) -> str:
        settings = self.board.lines.get(line)
        return settings.flow if settings and settings.flow else self.board.default_flow


def load_config(
    path: str | Path | None = None,
    *,
    root: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Defaults ← the YAML file (if any) ← ``overrides``."""
    path = path or os.environ.get("HOTLINE_CONFIG")
    base = Path(root) if root else (Path(path).parent if path else Path.cwd())
    data: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the configuration must be a mapping")
        data.update(loaded)
    data.update(overrides or {})
    config = _build(Config, data, str(path or "configuration"))
    config.root = base.resolve()
    return config


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        nested = {
            "board": BoardSettings,
            "control": ControlSettings,
            "sip": SipSettings,
            "speech": SpeechSettings,
            "acd": AcdSettings,
            "api": ApiSettings,
        }
        if name in nested and cls is Config:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {name} must be a mapping")
            kwargs[name] = _build(nested[name], value, f"{where}: {name}")
        elif name == "trunks" and cls is SipSettings:
            if not isinstance(value, list):
                raise ConfigError(f"{where}: trunks must be a list of trunk settings")
            kwargs[name] = [
                _build(TrunkSettings, t if isinstance(t, dict) else {}, f"{where}: trunk {i + 1}")
                for i, t in enumerate(value)
            ]
        elif name == "lines" and cls is BoardSettings:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: lines must be a mapping of line name to settings")
            kwargs[name] = {
                str(k): _build(LineSettings, v or {}, f"{where}: line {k}")
                for k, v in value.items()
            }
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
