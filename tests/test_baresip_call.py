"""Two real baresip softphones call each other through the switch, in a private network namespace.

Each phone's microphone is a WAV file with its own chirp; each phone records what it receives.
The B2BUA relays SDP unchanged, so RTP flows straight between the phones: what B records must be
A's chirp and what A records must be B's, which proves the offer and answer reached the right
phones intact.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tests.baresip import require_baresip, run_scenario

pytestmark = pytest.mark.integration

RATE = 8000


@pytest.fixture(scope="module", autouse=True)
def _baresip_and_namespaces() -> None:
    require_baresip()


def chirp(path: Path, f0: float, f1: float, seconds: float = 8.0) -> Path:
    """A linear chirp from f0 to f1 Hz as 8 kHz mono 16-bit WAV: never repeats, so it aligns once."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    samples = (0.5 * 32767 * np.sin(phase)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


def read_wav(path: str | Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2), path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def window_alignment(piece: np.ndarray, source: np.ndarray) -> float:
    """The highest normalised cross-correlation of a piece against every position in the source
    signal (1.0: the piece is a scaled copy of part of it)."""
    n = len(piece)
    dots = np.correlate(source, piece, mode="valid")
    energy = np.concatenate([[0.0], np.cumsum(source**2)])
    norms = np.sqrt(np.maximum(energy[n:] - energy[:-n], 0.0)) * np.linalg.norm(piece)
    return float(np.max(dots / np.maximum(norms, 1e-9)))


def best_alignment(recorded: np.ndarray, source: np.ndarray, window: float = 0.25) -> float:
    """How well a recording matches a source: the median alignment of three windows taken at a
    quarter, half and three quarters of the recording (a jitter-buffer glitch spoils one window,
    not the verdict)."""
    n = int(window * RATE)
    assert len(recorded) >= 2 * n, f"recording too short: {len(recorded)} samples"
    scores = []
    for at in (0.25, 0.5, 0.75):
        start = min(len(recorded) - n, max(0, int(at * len(recorded)) - n // 2))
        scores.append(window_alignment(recorded[start : start + n], source))
    return float(np.median(scores))


@pytest.fixture(scope="module")
def mics(tmp_path_factory) -> tuple[Path, Path]:
    """The two microphones: an up-chirp for A, a down-chirp for B."""
    folder = tmp_path_factory.mktemp("mics")
    return chirp(folder / "mic-a.wav", 300, 3000), chirp(folder / "mic-b.wav", 3200, 400)


def test_two_baresip_phones_register_call_through_the_switch_and_hear_each_other(tmp_path, mics):
    mic_a, mic_b = mics
    talk = 2.0
    result = run_scenario(tmp_path / "run", mic_a, mic_b, seconds=talk)
    detail = {k: v for k, v in result.items() if k != "logs"}

    assert result["registered"] == {"a": True, "b": True}, result
    assert result["established"] == {"a": True, "b": True}, result
    assert result["closed"] == {"a": True, "b": True}, result
    assert result["calls_left"] == 0

    cdr = result["cdr"]
    assert cdr["count"] == 1
    assert (cdr["caller"], cdr["callee"]) == ("1001", "1002")
    assert cdr["disposition"] == "answered" and cdr["hangup_side"] == "caller", cdr
    assert cdr["start"] <= cdr["answer"] <= cdr["end"]
    assert talk - 0.5 <= cdr["end"] - cdr["answer"] <= talk + 2.0, cdr

    recordings = result["recordings"]
    heard_by_a = read_wav(recordings["a"]["dec"])
    heard_by_b = read_wav(recordings["b"]["dec"])
    source_a, source_b = read_wav(mic_a), read_wav(mic_b)
    for heard in (heard_by_a, heard_by_b):
        assert len(heard) >= RATE, detail  # at least a second of received audio
    assert best_alignment(heard_by_b, source_a) >= 0.9, detail
    assert best_alignment(heard_by_a, source_b) >= 0.9, detail
    # And not their own microphone looped back: the chirps are unlike each other.
    assert best_alignment(heard_by_b, source_b) < 0.5
    assert best_alignment(heard_by_a, source_a) < 0.5


def test_callee_answering_after_ringing_then_hanging_up_gives_an_answered_cdr_ended_by_the_callee(tmp_path, mics):
    result = run_scenario(tmp_path / "run", *mics, seconds=1.0, answer="accept", hangup_by="b", ring=0.6)
    assert result["incoming"]["b"] and result["ringing"]["a"], result  # 180 relayed to the caller
    assert result["established"] == {"a": True, "b": True}, result
    assert result["closed"] == {"a": True, "b": True}, result
    cdr = result["cdr"]
    assert cdr["disposition"] == "answered" and cdr["hangup_side"] == "callee", cdr
    assert cdr["answer"] - cdr["start"] >= 0.5, cdr  # the ringing time is not billed
    assert result["calls_left"] == 0


def test_callee_rejecting_a_ringing_call_gives_the_caller_its_486_and_a_busy_cdr(tmp_path, mics):
    result = run_scenario(tmp_path / "run", *mics, answer="reject", ring=0.3)
    assert result["incoming"]["b"] and not any(result["established"].values()), result
    assert result["closed"] == {"a": True, "b": True}, result
    assert result["closed_reason"]["a"].startswith("486"), result["closed_reason"]
    cdr = result["cdr"]
    assert cdr["disposition"] == "busy" and cdr["answer"] is None and cdr["count"] == 1, cdr
    assert result["calls_left"] == 0


def test_caller_giving_up_while_it_rings_stops_the_callee_ringing_and_the_cdr_says_cancelled(tmp_path, mics):
    result = run_scenario(tmp_path / "run", *mics, answer="ignore", ring=0.3)
    assert result["incoming"]["b"] and not any(result["established"].values()), result
    assert result["closed"] == {"a": True, "b": True}, result  # B stopped ringing: CANCEL relayed
    cdr = result["cdr"]
    assert cdr["disposition"] == "cancelled" and cdr["hangup_side"] == "caller" and cdr["answer"] is None, cdr
    assert result["calls_left"] == 0
