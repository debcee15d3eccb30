"""The ``hotline`` command as operators and testers use it (real subprocesses)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from drivers.media.tones import dtmf_sequence, sine
from drivers.media.wav import write_wav
from support import FLOWS, REPO, SCENARIOS

BAD_FLOWS = REPO / "tests" / "flows_bad"


def hotline(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotline.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_flows_check_accepts_the_shipped_flows() -> None:
    done = hotline("flows", "check", str(FLOWS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    assert "6 flow file(s) OK" in done.stderr


def test_flows_check_prints_one_located_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    shutil.copy(BAD_FLOWS / "unknown_target.yaml", bad)
    done = hotline("flows", "check", str(bad), str(tmp_path / "missing.yaml"))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines and all(re.match(rf"{re.escape(str(bad))}:\d+:\d+: .+", ln) for ln in lines)
    assert "missing.yaml: no such file or folder" in done.stderr
    whole = hotline("flows", "check", str(BAD_FLOWS))
    assert whole.returncode == 1
    files = {ln.split(":")[0] for ln in whole.stdout.splitlines()}
    assert len(files) >= 30  # every file of the malformed corpus is reported


def test_say_prints_the_read_out_and_rejects_bad_values() -> None:
    assert hotline("say", "amount", "230.00").stdout == "二百三十元整\n"
    assert hotline("say", "digits", "13912345678").stdout.startswith("幺三九")
    bad = hotline("say", "amount", "12.3.4")
    assert bad.returncode == 1 and "12.3.4" in bad.stderr and bad.stdout == ""
    unknown = hotline("say", "money", "1")
    assert unknown.returncode == 2 and "unknown kind 'money'" in unknown.stderr


def test_dtmf_prints_the_digits_in_a_recording(tmp_path: Path) -> None:
    keys = tmp_path / "keys.wav"
    speech = np.concatenate([sine(300, 500, -20), dtmf_sequence("95598#*0"), sine(500, 300, -20)])
    write_wav(keys, speech)
    assert hotline("dtmf", str(keys)).stdout == "95598#*0\n"
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, sine(440, 1000, -20))
    done = hotline("dtmf", str(quiet))
    assert (done.returncode, done.stdout) == (0, "")
    stereo = tmp_path / "stereo.wav"
    write_wav(stereo, np.zeros((800, 2), np.int16), channels=2)
    done = hotline("dtmf", str(stereo))
    assert done.returncode == 1 and "stereo.wav" in done.stderr
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav file")
    assert hotline("dtmf", str(junk)).returncode == 1
    assert hotline("dtmf", str(tmp_path / "absent.wav")).returncode == 1


def test_sim_run_reports_each_scenario(tmp_path: Path) -> None:
    failing = tmp_path / "wrong.yaml"
    failing.write_text(
        "name: wrong expectation\nline: 2\ncaller: '13000000000'\n"
        "steps:\n  - expect: {text: 这句话不会出现, timeout: 15}\n",
        encoding="utf-8",
    )
    done = hotline("sim", "run", str(SCENARIOS / "bill_balance.yaml"), str(failing))
    assert done.returncode == 1, done.stderr
    assert "PASS" in done.stdout and "bill_balance.yaml" in done.stdout
    assert "FAIL" in done.stdout and "这句话不会出现" in done.stdout
    assert "1 passed, 1 failed" in done.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps:\n  - press: '12x'\n", encoding="utf-8")
    done = hotline("sim", "run", str(broken))
    assert done.returncode == 2 and "keys are 0-9" in done.stderr
