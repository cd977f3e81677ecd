from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from admin.keyfile import keys_home
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
    # The keys are kept apart from the database, one file per data directory.
    keys = settings.keys_file()
    assert keys.parent == keys_home() and keys.name.startswith("keys-")
    assert (elsewhere / "var") not in keys.parents
    assert Settings(data_dir=elsewhere / "other").keys_file() != keys


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


def test_a_realtime_line_talks_to_gpt_realtime_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_file(
        tmp_path,
        monkeypatch,
        "lines:\n"
        "  - {name: sales, numbers: ['5'], agent: realtime}\n"
        "  - name: support\n"
        "    numbers: ['6']\n"
        "    agent: realtime\n"
        "    model: {url: 'ws://198.18.0.9:8765/v1/realtime', model: parley-embedded,\n"
        "            api_key_env: null, turn_detection: semantic_vad, eagerness: low,\n"
        "            instructions: 'Be brief.'}\n"
        "default_line: sales\n",
    )
    settings = Settings()
    router = settings.router()
    sales_line, support_line = router.route("5"), router.route("6")
    assert sales_line is not None and support_line is not None
    sales = settings.session_target(sales_line).model
    assert (sales.url, sales.model, sales.api_key_env) == (
        "wss://api.openai.com/v1/realtime",
        "gpt-realtime",
        "OPENAI_API_KEY",
    )
    assert "sales line" in sales.instructions and "transfer_to_human" in sales.instructions
    support = settings.session_target(support_line).model
    assert (support.url, support.model, support.api_key_env) == (
        "ws://198.18.0.9:8765/v1/realtime",
        "parley-embedded",
        "",
    )
    assert (support.turn_detection, support.eagerness, support.instructions) == (
        "semantic_vad",
        "low",
        "Be brief.",
    )


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("{name: a, numbers: ['1'], agent: embedded, model: {}}", "for a hosted agent"),
        (
            "{name: a, numbers: ['1'], agent: realtime, model: {url: 'wss://h/v1?key=sk-1'}}",
            "not in the URL",
        ),
        (
            "{name: a, numbers: ['1'], agent: realtime, model: {api_key_env: 'sk-live-abc'}}",
            "api_key_env",
        ),
        (
            "{name: a, numbers: ['1'], agent: realtime, model: {turn_detection: push_to_talk}}",
            "turn_detection",
        ),
        ("{name: a, numbers: ['1'], agent: realtime, model: {url: 'http://h'}}", "url"),
        ("{name: a, numbers: ['1'], agent: realtime, model: {modle: x}}", "modle"),
    ],
)
def test_bad_model_settings_are_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, words: str
) -> None:
    _use_file(tmp_path, monkeypatch, f"lines:\n  - {line}\ndefault_line: a\n")
    with pytest.raises(ValidationError, match=words):
        Settings()


def test_run_says_which_model_a_line_uses_and_when_its_key_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_file(
        tmp_path,
        monkeypatch,
        "lines:\n  - {name: sales, numbers: ['5'], agent: realtime}\n"
        "  - {name: echo, numbers: ['6'], agent: echo}\ndefault_line: sales\n",
    )
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    [missing] = Settings().model_notices()
    assert "line sales: realtime model gpt-realtime" in missing
    assert "OPENAI_API_KEY is not set" in missing
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    [ready] = Settings().model_notices()
    assert ready.endswith("key from OPENAI_API_KEY") and "sk-secret" not in ready


def test_a_gemini_live_line_takes_googles_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_file(
        tmp_path,
        monkeypatch,
        "lines:\n  - {name: g, numbers: ['7'], agent: gemini-live, model: {voice: Puck}}\n"
        "default_line: g\n",
    )
    settings = Settings()
    line = settings.router().route("7")
    assert line is not None
    model = settings.session_target(line).model
    assert model.url.startswith("wss://generativelanguage.googleapis.com/ws/")
    assert (model.model, model.api_key_env, model.voice) == (
        "gemini-live-2.5-flash-preview",
        "GEMINI_API_KEY",
        "Puck",
    )
