from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from admin.settings import Settings


def test_defaults_describe_a_small_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    settings = Settings()
    assert settings.sip.port == 5060
    assert settings.sip.workers == 5  # 20 calls (what the engine holds), 4 per worker
    edge = settings.edge_config()
    assert [w.port for w in edge.workers] == [5071, 5072, 5073, 5074, 5075]
    assert settings.worker_config(1).rtp_port == 20040
    assert settings.router().route("100") is not None


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
