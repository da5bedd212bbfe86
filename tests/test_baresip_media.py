"""Issue 4's proof with real baresip softphones: the switch anchors the media of dialplan calls.

Each test runs `tests.baresip media` under `unshare -n` (a node in-process with a dialplan, real
baresips whose microphone is a WAV file and which record what they hear) and checks its JSON:

- a recorded call (route 800: record, dial 1002): the switch's stereo recording holds the caller's
  microphone in its left channel (normalised cross-correlation >= 0.9), lasts as long as the CDR's
  talk time (within 100 ms) and its RecordingSaved event carries the file's real SHA-256;
- a TTS prompt (route 801): what baresip recorded is speech, in the telephone band, as long as
  the prompt the renderer makes of the same text (within 300 ms), and is that very prompt;
- DTMF (route 802 gathers 4 digits, then hangs up): baresip's `sndcode` digits are detected as
  RFC 4733 events; with telephone-event stripped from its offer, tones in its microphone WAV are
  detected in-band.
"""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import numpy as np
import pytest

from media.dtmf import dtmf_tone
from media.tts import TtsRenderer
from tests.baresip import (
    TTS_PROMPT,
    require_baresip,
    run_media_scenario,
    strip_telephone_event,
)

pytestmark = pytest.mark.integration

RATE = 8000


@pytest.fixture(scope="module", autouse=True)
def _baresip_and_namespaces() -> None:
    require_baresip()


def write_wav(path: Path, samples: np.ndarray) -> Path:
    """8 kHz mono 16-bit WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


def chirp(path: Path, f0: float, f1: float, seconds: float = 8.0) -> Path:
    """A linear chirp from f0 to f1 Hz: never repeats, so it aligns at one lag only."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    return write_wav(path, (0.5 * 32767 * np.sin(phase)).astype(np.int16))


def read_wav(path: str | Path) -> np.ndarray:
    """Samples as float, shape (frames, channels)."""
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getsampwidth()) == (RATE, 2), path
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        return raw.reshape(-1, w.getnchannels())


def aligned_correlation(recorded: np.ndarray, source: np.ndarray) -> tuple[float, int]:
    """Align `recorded` with `source` at the cross-correlation peak, then the normalised
    cross-correlation of the overlapping part (1.0: a scaled copy) and the lag in samples."""
    n = len(recorded) + len(source) - 1
    size = 1 << (n - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(source, size) * np.conj(np.fft.rfft(recorded, size)), size)
    # full[k] = sum source[i + k] * recorded[i]; negative lags wrap to the end
    lags = np.concatenate([np.arange(0, len(source)), np.arange(-(len(recorded) - 1), 0)])
    values = np.concatenate([full[: len(source)], full[size - (len(recorded) - 1):]])
    lag = int(lags[np.argmax(values)])
    if lag >= 0:
        src = source[lag : lag + len(recorded)]
        rec = recorded[: len(src)]
    else:
        rec = recorded[-lag:][: len(source)]
        src = source[: len(rec)]
    return float(np.dot(src, rec) / max(np.linalg.norm(src) * np.linalg.norm(rec), 1e-9)), lag


def speech_span(x: np.ndarray, threshold_dbfs: float = -40.0) -> tuple[float, float]:
    """Start and end (seconds) of the part louder than the threshold, in 20 ms frames."""
    frame = RATE // 50
    n = len(x) // frame
    rms = np.sqrt((x[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    loud = np.nonzero(20 * np.log10(np.maximum(rms, 1.0) / 32768) > threshold_dbfs)[0]
    assert len(loud), "nothing above the silence threshold"
    return loud[0] * frame / RATE, (loud[-1] + 1) * frame / RATE


def band_fraction(x: np.ndarray, low: float = 300.0, high: float = 3400.0) -> float:
    """The share of the signal's energy between `low` and `high` Hz."""
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / max(power.sum(), 1e-9))


@pytest.fixture(scope="module")
def mics(tmp_path_factory) -> tuple[Path, Path]:
    """An up-chirp for A, a down-chirp for B."""
    folder = tmp_path_factory.mktemp("mics")
    return chirp(folder / "mic-a.wav", 300, 3000), chirp(folder / "mic-b.wav", 3200, 400)


def detail(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("events",)}


def test_switch_recording_of_a_baresip_call_holds_the_callers_microphone_for_the_talk_time(tmp_path, mics):
    mic_a, mic_b = mics
    result = run_media_scenario(tmp_path / "run", mic_a, "800", mic_b=mic_b, seconds=2.0)
    assert result["established"] == {"a": True, "b": True}, detail(result)
    assert result["closed"] == {"a": True, "b": True}, detail(result)
    cdr = result["cdr"]
    assert cdr["disposition"] == "answered" and cdr["hangup_side"] == "caller", cdr
    (saved,) = result["saved"]
    assert saved["channels"] == 2

    path = Path(saved["path"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == saved["sha256"]
    talk = cdr["end"] - cdr["answer"]
    recording = read_wav(path)
    assert recording.shape[1] == 2
    assert abs(len(recording) / RATE - talk) <= 0.1, (len(recording) / RATE, talk)
    assert abs(saved["duration"] - talk) <= 0.1, (saved["duration"], talk)
    assert len(recording) >= 1.5 * RATE

    source_a, source_b = read_wav(mic_a)[:, 0], read_wav(mic_b)[:, 0]
    caller, callee = recording[:, 0], recording[:, 1]
    score, lag = aligned_correlation(caller, source_a)
    assert score >= 0.9, (score, lag)
    # The right channel is the called phone, not the caller again.
    assert aligned_correlation(callee, source_b)[0] >= 0.9
    assert aligned_correlation(caller, source_b)[0] < 0.5
    # And the media really flowed through the switch to B: B heard A's chirp.
    heard_by_b = read_wav(result["recordings"]["b"]["dec"])[:, 0]
    assert aligned_correlation(heard_by_b, source_a)[0] >= 0.9


def test_tts_prompt_played_by_the_switch_is_recorded_by_baresip_as_speech_of_the_prompts_length(
        tmp_path, mics):
    cache = tmp_path / "tts"
    prompt = read_wav(TtsRenderer(cache).render_sync(TTS_PROMPT, lang="ja"))[:, 0]
    result = run_media_scenario(tmp_path / "run", mics[0], "801", seconds=None, tts_cache=cache)
    assert result["established"] == {"a": True} and result["closed"] == {"a": True}, detail(result)
    assert result["hung_up_by"] == "switch" and result["cdr"]["hangup_side"] != "caller", detail(result)

    heard = read_wav(result["recordings"]["a"]["dec"])[:, 0]
    start, end = speech_span(heard)
    heard_speech = heard[int(start * RATE) : int(end * RATE)]
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(heard_speech**2)) / 32768)
    assert rms_dbfs > -30, rms_dbfs  # speech, not silence or line noise
    assert band_fraction(heard_speech) >= 0.8
    p_start, p_end = speech_span(prompt)
    assert abs((end - start) - (p_end - p_start)) <= 0.3, ((start, end), (p_start, p_end))
    assert end - start >= 2.0
    # It is that prompt, not any speech: it lines up with the rendering.
    assert aligned_correlation(heard_speech, prompt)[0] >= 0.9


def test_baresip_sndcode_digits_reach_the_switch_as_rfc4733_events_and_end_the_gather(tmp_path, mics):
    result = run_media_scenario(tmp_path / "run", mics[0], "802", seconds=None, digits="1234")
    assert result["established"] == {"a": True} and result["closed"] == {"a": True}, detail(result)
    detected = result["detected"]
    assert [d["digit"] for d in detected] == list("1234"), detected
    assert {d["source"] for d in detected} == {"rfc4733"}, detected
    assert all(leg_pt >= 0 for leg_pt in result["te_pt"].values()), result["te_pt"]
    # The gather took 4 digits and the plan went on to hang up, long before its 8 s timeout.
    assert result["hung_up_by"] == "switch" and result["talk_seconds"] < 5.0, detail(result)


def test_dtmf_tones_in_baresips_audio_without_telephone_event_are_detected_in_band(tmp_path):
    silence = np.zeros(RATE // 2, dtype=np.int16)
    gap = np.zeros(int(0.15 * RATE), dtype=np.int16)
    tones = [silence]
    for digit in "5678":
        tones += [dtmf_tone(digit, 150), gap]
    tones.append(np.zeros(2 * RATE, dtype=np.int16))
    mic = write_wav(tmp_path / "tones.wav", np.concatenate(tones))

    result = run_media_scenario(tmp_path / "run", mic, "802", seconds=None, no_telephone_event=True)
    assert result["established"] == {"a": True} and result["closed"] == {"a": True}, detail(result)
    assert result["offers_stripped"] >= 1
    assert list(result["te_pt"].values()) == [-1], result["te_pt"]  # no telephone-event negotiated
    detected = result["detected"]
    assert [d["digit"] for d in detected] == list("5678"), detected
    assert {d["source"] for d in detected} == {"inband"}, detected
    assert all(100 <= d["duration_ms"] <= 250 for d in detected), detected
    assert result["hung_up_by"] == "switch" and result["talk_seconds"] < 5.0, detail(result)


def test_the_relays_filter_drops_telephone_event_from_an_offer_and_fixes_content_length():
    body = ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n")
    message = (f"INVITE sip:802@127.0.0.1 SIP/2.0\r\nContent-Type: application/sdp\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
    head, _, new_body = strip_telephone_event(message).partition(b"\r\n\r\n")
    assert b"m=audio 20000 RTP/AVP 0 8\r\n" in new_body
    assert b"101" not in new_body and b"a=rtpmap:8 PCMA/8000" in new_body
    assert f"Content-Length: {len(new_body)}".encode() in head
    plain = message.replace(b"telephone-event", b"PCMX")
    assert strip_telephone_event(plain) == plain
