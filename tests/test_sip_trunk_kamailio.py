"""Trunk registration against a real upstream registrar: Kamailio (Debian package).

Kamailio runs as a subprocess on 127.0.0.1 with a configuration generated here: usrloc in
memory, the registrar module, and digest authentication (SHA-256, qop=auth) against one
static trunk password (``pv_www_authenticate``). INVITEs to a registered user are relayed to
its contact. The test reads Kamailio's location table over its control socket (``kamcmd
ul.dump``). A real registrar keeps real time, so the engine runs on its production loop.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from test_sip_calls import SipCaller, listen, said

from drivers.clock import new_loop
from hotline.config import TrunkSettings

KAMAILIO = shutil.which("kamailio")
KAMCMD = shutil.which("kamcmd")
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
pytestmark = pytest.mark.skipif(
    KAMAILIO is None or KAMCMD is None,
    reason="kamailio is not installed (apt-get install kamailio)",
)
PASSWORD = "trunk-secret-95598"
DOMAIN = "pbx.local"

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "ctl.so"
modparam("ctl", "binrpc", "unix:{control}")
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 2)
modparam("auth", "algorithm", "SHA-256")
modparam("auth", "secret", "{secret}")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{password}", "0")) {{
            xlog("L_NOTICE", "trunk-test: REGISTER refused for $tu ($rc)\\n");
            www_challenge("$td", "1");
            exit;
        }}
        consume_credentials();
        xlog("L_NOTICE", "trunk-test: REGISTER $cs expires $hdr(Expires) from $si:$sp\\n");
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
    if (is_method("INVITE") && !has_totag()) {{
        if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    }}
    if (!t_relay()) {{ sl_reply_error(); }}
}}
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kamailio:
    """One Kamailio process started by the test (and stopped by its PID)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_udp_port()
        self.control = folder / "ctl.sock"
        self.log_path = folder / "kamailio.log"
        self.process: asyncio.subprocess.Process | None = None
        (folder / "kamailio.cfg").write_text(
            CONFIG.format(
                port=self.port,
                modules=MODULES,
                control=self.control,
                secret=secrets.token_hex(8),
                password=PASSWORD,
            )
        )

    async def start(self) -> None:
        assert KAMAILIO is not None
        self.process = await asyncio.create_subprocess_exec(
            KAMAILIO,
            "-f",
            str(self.folder / "kamailio.cfg"),
            "-DD",  # foreground, the test's child
            "-E",  # log to stderr
            "-Y",
            str(self.folder),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=open(self.log_path, "wb"),  # noqa: SIM115
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await wait_until(self._answers, 10, "kamailio control socket", self)
        except BaseException:
            await self.stop()
            raise

    async def _answers(self) -> bool:
        return (await self.rpc("core.version")).startswith("kamailio")

    async def rpc(self, *command: str) -> str:
        assert KAMCMD is not None
        process = await asyncio.create_subprocess_exec(
            KAMCMD,
            "-s",
            f"unix:{self.control}",
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()
            return ""
        return out.decode(errors="replace")

    async def contacts(self, aor: str) -> list[dict[str, str]]:
        """The contacts Kamailio's location table holds for ``aor`` (address, expires, cseq)."""
        dump = await self.rpc("ul.dump")
        out: list[dict[str, str]] = []
        for block in dump.split("AoR: ")[1:]:
            if block.split()[0] != aor:
                continue
            for contact in block.split("Contact: {")[1:]:
                fields = dict(re.findall(r"^\s*([\w-]+): (.*)$", contact, re.M))
                out.append(fields)
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool], timeout: float, what: str, kam: Kamailio
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not seen in {timeout} s\n{kam.log()[-3000:]}")
        await asyncio.sleep(0.1)


def run_real_time(body: Callable[[], Awaitable[Any]]) -> Any:
    loop = new_loop()  # the engine's production loop: uvloop where available
    try:
        return loop.run_until_complete(body())
    finally:
        loop.close()


def trunk_config(engine_config: Any, kam: Kamailio, **settings: Any) -> Any:
    engine_config.sip.answer_after = 0.2
    if getattr(engine_config, "api", None) is not None:
        engine_config.api.enabled = False  # not under test; its fixed port may be taken
    values: dict[str, Any] = {
        "name": "pbx",
        "registrar": f"127.0.0.1:{kam.port}",
        "user": "95598",
        "password_env": "HOTLINE_TEST_TRUNK_PASSWORD",
        "domain": DOMAIN,
        "expires": 4,  # refreshed after 2 s, so the test sees a refresh
    }
    values.update(settings)
    engine_config.sip.trunks = [TrunkSettings(**values)]
    return engine_config


def test_engine_registers_at_kamailio_refreshes_takes_a_call_and_unregisters(
    engine_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hotline.engine import Engine

    monkeypatch.setenv("HOTLINE_TEST_TRUNK_PASSWORD", PASSWORD)
    kam = Kamailio(tmp_path / "kamailio")
    config = trunk_config(engine_config, kam)

    async def go() -> dict[str, Any]:
        await kam.start()
        engine = Engine(config, watch_flows=False)
        seen: dict[str, Any] = {}
        try:
            await engine.start()
            plays = listen(engine)
            contact = f"sip:95598@127.0.0.1:{engine.sip.port}"

            async def bound() -> bool:
                return any(c.get("Address") == contact for c in await kam.contacts("95598"))

            await wait_until(bound, 10, "the engine's binding in kamailio", kam)
            (first,) = await kam.contacts("95598")
            seen["first"] = first

            async def refreshed() -> bool:
                rows = await kam.contacts("95598")
                return bool(rows) and int(rows[0]["CSeq"]) > int(first["CSeq"])

            await wait_until(refreshed, 10, "a refresh of the binding", kam)
            seen["refreshed"] = (await kam.contacts("95598"))[0]
            seen["status"] = engine.sip.trunks.status()

            # a call for the trunk's number, relayed by kamailio to the registered contact
            caller = SipCaller(kam.port, called="95598")
            await caller.open()
            try:
                caller.send(caller.invite_bytes())
                ok = await caller.response(200)
                seen["ok_server"] = ok.headers.get("server")
                caller.engine = ("127.0.0.1", engine.sip.port)  # ACK and BYE end to end
                caller.to_header = ok.headers.get("to") or ""
                caller.send(
                    (
                        f"ACK {contact} SIP/2.0\r\n"
                        + caller.headers("ACK", 1, branch="z9hG4bKack1", to=caller.to_header)
                        + "Content-Length: 0\r\n\r\n"
                    ).encode()
                )
                caller._tick()
                await wait_until(lambda: said(plays, "欢迎致电"), 15, "the welcome prompt", kam)
                await wait_until(lambda: len(caller.received) > 8000, 10, "prompt audio", kam)
                seen["called"] = [p.get("call_id") for p in plays]
                caller.bye()
                await asyncio.wait_for(engine.idle(), 15)
            finally:
                caller.close()
            seen["heard"] = bytes(caller.received)
        finally:
            with capture_logs() as logs:
                await engine.stop()
            seen["stop_logs"] = logs
            seen["after_stop"] = await kam.contacts("95598")
            await kam.stop()
        return seen

    seen = run_real_time(go)
    assert seen["first"]["User-Agent"] == "hotline-95598"
    assert int(seen["first"]["Expires"]) <= 4
    assert int(seen["refreshed"]["CSeq"]) > int(seen["first"]["CSeq"])
    (status,) = seen["status"]
    assert status["registered"] is True and status["state"] == "registered"
    assert status["aor"] == f"sip:95598@{DOMAIN}"
    assert seen["ok_server"] == "hotline-95598"
    assert seen["called"] and len(set(seen["heard"])) > 10  # prompt audio, not one code
    assert seen["after_stop"] == []  # unregistered
    assert any(e["event"] == "sip.trunk_unregistered" for e in seen["stop_logs"])


def test_wrong_trunk_password_is_logged_and_retried_after_a_backoff(
    engine_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hotline.engine import Engine

    monkeypatch.setenv("HOTLINE_TEST_TRUNK_PASSWORD", "not-the-password")
    kam = Kamailio(tmp_path / "kamailio")
    config = trunk_config(engine_config, kam)

    async def go() -> dict[str, Any]:
        await kam.start()
        engine = Engine(config, watch_flows=False)
        seen: dict[str, Any] = {}
        try:
            with capture_logs() as logs:
                await engine.start()

                def failed() -> bool:
                    return any(e["event"] == "sip.trunk_auth_failed" for e in logs)

                await wait_until(failed, 10, "sip.trunk_auth_failed", kam)
                refusals = kam.log().count("trunk-test: REGISTER refused")
                await asyncio.sleep(1.0)  # inside the 5 s backoff: no new attempt
                seen["refusals"] = (refusals, kam.log().count("trunk-test: REGISTER refused"))
                seen["status"] = engine.sip.trunks.status()
                seen["contacts"] = await kam.contacts("95598")
            seen["logs"] = logs
        finally:
            await engine.stop()
            await kam.stop()
        return seen

    seen = run_real_time(go)
    (event,) = [e for e in seen["logs"] if e["event"] == "sip.trunk_auth_failed"]
    assert event["log_level"] == "error" and event["trunk"] == "pbx"
    assert "refused the credentials of user 95598" in event["reason"]
    assert event["status"] == 401 and event["retry_in"] == 5.0
    assert seen["refusals"][0] == 2 and seen["refusals"][1] == 2  # challenge, refusal; no retry
    (status,) = seen["status"]
    assert status["registered"] is False and status["failures"] == 1
    assert status["state"] == "waiting"
    assert seen["contacts"] == []


def test_missing_password_variable_stops_the_engine_with_a_clear_error(
    engine_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hotline.engine import Engine, EngineError

    monkeypatch.delenv("HOTLINE_TEST_TRUNK_PASSWORD", raising=False)
    kam = Kamailio(tmp_path / "kamailio")  # not started: the engine must refuse before sending
    config = trunk_config(engine_config, kam)

    async def go() -> str:
        engine = Engine(config, watch_flows=False)
        try:
            await engine.start()
        except EngineError as exc:
            return str(exc)
        finally:
            await engine.stop()
        return ""

    message = run_real_time(go)
    assert "trunk pbx: environment variable HOTLINE_TEST_TRUNK_PASSWORD is not set" in message
