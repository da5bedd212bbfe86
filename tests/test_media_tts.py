"""Real TTS engines: pyopenjtalk for Japanese, espeak-ng for English, the disk cache and the CLI."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from media.audio import read_wav, rms_dbfs
from media.tts import TtsError, TtsRenderer, engine_for

REPO = Path(__file__).resolve().parents[1]


def _check_speech(path: Path, min_s: float, max_s: float) -> None:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    a = read_wav(path)
    pcm = a.samples[:, 0] * 32768
    assert min_s < a.duration < max_s
    assert rms_dbfs(pcm) > -40  # speech, not silence
    assert np.abs(pcm).max() < 32767 * 0.99  # levelled, not clipped


def test_engine_choice_by_language() -> None:
    assert engine_for("ja") == "openjtalk" and engine_for("ja-JP") == "openjtalk"
    assert engine_for("en") == "espeak-ng" and engine_for("ko") == "espeak-ng"


def test_openjtalk_renders_japanese_to_8k_speech_and_caches_it(tmp_path: Path) -> None:
    r = TtsRenderer(tmp_path)
    path = r.render_sync("お電話ありがとうございます。", lang="ja")
    _check_speech(path, 1.0, 4.0)
    assert path.parent == tmp_path and path.name.startswith("openjtalk-")
    mtime = path.stat().st_mtime_ns
    assert r.render_sync("お電話ありがとうございます。", lang="ja") == path
    assert (r.hits, r.misses) == (1, 1) and path.stat().st_mtime_ns == mtime
    # a different text, rate or speed is a different cache entry
    assert r.render_sync("少々お待ちください。", lang="ja") != path
    assert r.render_sync("お電話ありがとうございます。", lang="ja", voice="1.3") != path


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
async def test_espeak_renders_english_off_the_event_loop_and_second_call_hits_the_cache(
    tmp_path: Path,
) -> None:
    r = TtsRenderer(tmp_path)
    first, second = await asyncio.gather(
        r.render("Thank you for calling.", lang="en"), r.render("Thank you for calling.", lang="en")
    )
    assert first == second and r.misses == 1  # concurrent requests share one rendering
    _check_speech(first, 0.6, 4.0)
    assert await r.render("Thank you for calling.", lang="en") == first
    assert r.hits == 1


async def test_async_japanese_render_uses_the_same_cache_as_sync(tmp_path: Path) -> None:
    r = TtsRenderer(tmp_path)
    p = await r.render("はい", lang="ja")
    assert r.render_sync("はい", lang="ja") == p and r.hits == 1


def test_empty_text_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TtsError):
        TtsRenderer(tmp_path).render_sync("   ")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "softswitch.cli", "tts", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_cli_renders_a_japanese_greeting_to_a_wav_file(tmp_path: Path) -> None:
    out = tmp_path / "greeting.wav"
    env = {**os.environ, "SOFTSWITCH_TTS_CACHE": str(tmp_path / "cache")}
    proc = _cli("お電話ありがとうございます", "-o", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    _check_speech(out, 1.0, 4.0)


def test_cli_reports_an_unwritable_output_path_with_exit_code_2(tmp_path: Path) -> None:
    env = {**os.environ, "SOFTSWITCH_TTS_CACHE": str(tmp_path / "cache")}
    proc = _cli("テスト", "-o", str(tmp_path / "missing-dir" / "x.wav"), env=env)
    assert proc.returncode == 2
    assert "cannot write" in proc.stderr


def test_cli_reports_a_missing_engine_with_exit_code_2(tmp_path: Path) -> None:
    # a PATH without espeak-ng: the engine is missing for English
    env = {**os.environ, "PATH": str(tmp_path), "SOFTSWITCH_TTS_CACHE": str(tmp_path / "cache")}
    proc = _cli("hello", "--lang", "en", "-o", str(tmp_path / "x.wav"), env=env)
    assert proc.returncode == 2
    assert "espeak-ng is not installed" in proc.stderr
    assert not (tmp_path / "x.wav").exists()
