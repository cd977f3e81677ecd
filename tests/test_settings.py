from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from admin.settings import Settings
from admin.settings_errors import describe


def test_defaults_describe_a_small_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    settings = Settings()
    assert settings.sip.port == 5060
    assert settings.sip.workers == 5  # 20 calls (what the engine holds), 4 per worker
    edge = settings.edge_config()
    assert [w.port for w in edge.workers] == [5071, 5072, 5073, 5074, 5075]
    assert settings.worker_config(1).rtp_port == 20040
    assert settings.router().route("100") is not None


def test_supervisor_phones_and_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    settings = Settings.model_validate(
        {
            "sip": {
                "supervisor_slots": 1,
                "phones": [
                    {"name": "alice", "password": "alice-secret-1"},
                    {"name": "desk", "uri": "sip:7001@192.0.2.10:5060"},
                ],
            }
        }
    )
    # One slot of the four kept for a supervisor's leg: 3 callers per worker.
    assert settings.sip.workers == 7
    worker = settings.worker_config(0)
    assert (worker.max_calls, worker.caller_slots) == (4, 3)
    assert worker.edge_uri == "sip:127.0.0.1:5060"
    assert settings.phone_uri("alice") == "sip:alice@127.0.0.1:5060"
    assert [p.name for p in settings.edge_config().phones] == ["alice", "desk"]
    with pytest.raises(KeyError, match="no supervisor phone 'bob'"):
        settings.phone_uri("bob")
    with pytest.raises(ValidationError, match="8-64 printable"):
        Settings.model_validate({"sip": {"phones": [{"name": "eve", "password": "short"}]}})


def test_a_supervisors_phone_may_be_their_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    settings = Settings.model_validate(
        {
            "sip": {"phones": [{"name": "alice", "password": "alice-secret-1"}]},
            "supervisors": [
                {"name": "alice", "phone": "alice"},
                {"name": "bob", "phone": "browser", "queues": ["default"]},
            ],
        }
    )
    uris = {s.name: s.phone_uri for s in settings.escalation_config().supervisors}
    assert uris == {"alice": "sip:alice@127.0.0.1:5060", "bob": "browser:bob"}
    assert settings.worker_config(0).audio_path == str(settings.run_dir() / "worker-0.audio.sock")
    assert settings.escalation_needed()
    with pytest.raises(ValidationError, match="'browser' is kept for supervisors' browsers"):
        Settings.model_validate({"sip": {"phones": [{"name": "browser", "password": "x" * 10}]}})
    with pytest.raises(ValidationError, match="not a supervisor name a browser leg can carry"):
        Settings.model_validate({"supervisors": [{"name": "bob smith", "phone": "browser"}]})
    with pytest.raises(
        ValidationError, match=r"phone 'carol' is not in sip.phones \(nor 'browser'"
    ):
        Settings.model_validate({"supervisors": [{"name": "carol", "phone": "carol"}]})


def test_yaml_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text(
        "sip:\n  port: 5080\n  call_capacity: 10\n"
        "lines:\n  - name: sales\n    numbers: ['555']\n    agent: echo-delayed\n"
        "default_line: null\n"
    )
    monkeypatch.setenv("PARLEY_CONFIG", str(config))
    monkeypatch.setenv("PARLEY_SIP__PORT", "5090")
    settings = Settings()
    assert settings.sip.port == 5090  # the environment wins over the file
    assert settings.sip.call_capacity == 10
    assert settings.sip.workers == 3
    line = settings.router().route("555")
    assert line is not None and line.agent == "echo-delayed"
    assert settings.router().route("100") is None


def test_invalid_settings_say_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text(
        "lines:\n  - name: a\n    numbers: ['1']\n    agent: gpt-9\ndefault_line: a\n"
    )
    monkeypatch.setenv("PARLEY_CONFIG", str(config))
    with pytest.raises(ValidationError, match="unknown agent profile"):
        Settings()
    monkeypatch.setenv("PARLEY_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Settings()
    monkeypatch.delenv("PARLEY_CONFIG")
    monkeypatch.setenv("PARLEY_SIP__RTP_TIMEOUT_S", "2")
    with pytest.raises(ValidationError, match="rtp_timeout_s"):
        Settings()


def _use_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text(text)
    monkeypatch.setenv("PARLEY_CONFIG", str(config))


def test_a_line_without_an_agent_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_file(
        tmp_path, monkeypatch, "lines:\n  - {name: sales, numbers: ['5']}\ndefault_line: sales\n"
    )
    with pytest.raises(ValidationError, match="line 'sales' has no agent: set agent to one of"):
        Settings()


def test_errors_name_the_path_of_the_bad_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_file(
        tmp_path,
        monkeypatch,
        "sip: {call_capcity: 40}\n"
        "lines:\n  - {name: a, numbers: ['1'], agent: echo, knowlege_base: x}\n"
        "default_line: a\n",
    )
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert describe(raised.value, Settings) == [
        "sip.call_capcity: not a setting (did you mean call_capacity?)",
        "lines.0.knowlege_base: not a setting (did you mean knowledge_base?)",
    ]


def test_a_relative_data_dir_counts_from_the_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "parley.yaml").write_text("data_dir: state\n")
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("PARLEY_CONFIG", str(folder / "parley.yaml"))
    assert Settings().data_dir == folder / "state"
    monkeypatch.setenv("PARLEY_DATA_DIR", "from-env")  # no file says it: the current folder
    assert Settings().data_dir == elsewhere / "from-env"
    monkeypatch.delenv("PARLEY_DATA_DIR")
    monkeypatch.delenv("PARLEY_CONFIG")
    settings = Settings()
    assert settings.data_dir == elsewhere / "var"
    assert settings.database_url() == f"sqlite:///{elsewhere / 'var' / 'parley.db'}"
    assert settings.keys_file() == elsewhere / "var" / "keys.json"


def _parley(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "admin.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_line_reads_config_before_or_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text("sip: {port: 5099}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    for argv in (["--config", str(config), "config"], ["config", "--config", str(config)]):
        shown = _parley(*argv, env=env)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["sip"]["port"] == 5099
    version = _parley("--version", env=env)
    assert version.returncode == 0 and version.stdout.startswith("parley ")
    assert "exit codes:" in _parley("--help", env=env).stdout


def test_bad_settings_exit_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text("sip: {call_capcity: 40}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    bad = _parley("config", "--config", str(config), env=env)
    assert bad.returncode == 2
    assert str(config) in bad.stderr
    assert "sip.call_capcity: not a setting (did you mean call_capacity?)" in bad.stderr
