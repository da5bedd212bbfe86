"""WAV reading/writing, resampling and conversion to telephony audio; the mixer; the recording buffer; the port pool."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from media import g711
from media.audio import (
    WavError,
    normalised_xcorr_peak,
    parse_wav,
    read_wav,
    resample,
    rms_dbfs,
    to_telephony,
    wav_bytes,
    write_wav,
)
from media.local import encode_frames
from media.mixer import AGENT, CALLER, SUPERVISOR, Mixer
from media.ports import PortPool, PortPoolExhausted, parse_port_range
from media.recorder import RecordingBuffer


def _wav(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes, extensible: bool = False) -> bytes:
    align = channels * bits // 8
    if extensible:
        fmt = (
            struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * align, align, bits)
            + struct.pack("<HHI", 22, bits, 0)
            + struct.pack("<H", fmt_tag)
            + b"\x00" * 14
        )
    else:
        fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * align, align, bits)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"LIST"
        + struct.pack("<I", 3)
        + b"abc\x00"
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize(
    ("tag", "bits", "encode"),
    [
        (1, 8, lambda x: (np.round(x * 127) + 128).astype(np.uint8).tobytes()),
        (1, 16, lambda x: (x * 32767).astype("<i2").tobytes()),
        (
            1,
            24,
            lambda x: b"".join(
                int(v).to_bytes(3, "little", signed=True) for v in (x * 8388607).astype(np.int64)
            ),
        ),
        (1, 32, lambda x: (x * 2147483647).astype("<i4").tobytes()),
        (3, 32, lambda x: x.astype("<f4").tobytes()),
        (3, 64, lambda x: x.astype("<f8").tobytes()),
        (7, 8, lambda x: g711.ulaw_encode((x * 32767).astype(np.int16))),
        (6, 8, lambda x: g711.alaw_encode((x * 32767).astype(np.int16))),
    ],
)
def test_wav_reader_decodes_common_sample_formats(tag: int, bits: int, encode) -> None:  # type: ignore[no-untyped-def]
    x = _sine(16000, 0.05)
    a = parse_wav(_wav(tag, 1, 16000, bits, encode(x)))
    assert a.rate == 16000 and a.channels == 1
    assert np.max(np.abs(a.samples[:, 0] - x)) < 0.02


def test_wav_reader_handles_extensible_stereo_and_truncated_data() -> None:
    x = (np.stack([_sine(8000, 0.1), -_sine(8000, 0.1)], axis=1) * 32767).astype("<i2")
    a = parse_wav(_wav(1, 2, 8000, 16, x.tobytes(), extensible=True))
    assert a.channels == 2 and a.samples.shape == (800, 2)
    assert to_telephony(a).max() < 50  # the two channels cancel when mixed down
    cut = _wav(1, 1, 8000, 16, x[:, 0].tobytes())[:-101]  # a recording cut mid-sample
    assert parse_wav(cut).samples.shape[0] == (800 * 2 - 101) // 2


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF\x00\x00\x00\x00WAVX",
        b"RIFF\x04\x00\x00\x00WAVE",
        _wav(2, 1, 8000, 4, b"\x00" * 10),
        _wav(1, 1, 8000, 12, b"\x00" * 10),
        _wav(1, 0, 8000, 16, b""),
    ],
)
def test_wav_reader_rejects_what_it_cannot_decode(data: bytes) -> None:
    with pytest.raises(WavError):
        parse_wav(data)


def test_wav_writer_round_trips_through_the_reader(tmp_path: Path) -> None:
    pcm = (np.arange(-1000, 1000, 3)).astype(np.int16)
    write_wav(tmp_path / "x.wav", pcm)
    a = read_wav(tmp_path / "x.wav")
    assert a.rate == 8000 and np.array_equal(np.round(a.samples[:, 0] * 32768).astype(np.int16), pcm)
    assert not (tmp_path / "x.wav.tmp").exists()


@pytest.mark.parametrize("src", [11025, 16000, 22050, 44100, 48000])
def test_resampling_to_8k_keeps_in_band_tones_and_removes_what_would_alias(src: int) -> None:
    x = _sine(src, 1.0, 1000, 0.4) + (_sine(src, 1.0, 5000, 0.4) if src > 10000 else 0)
    y = resample(x, src, 8000)
    assert abs(y.size - 8000) <= 1
    spec = np.abs(np.fft.rfft(y))
    f = np.fft.rfftfreq(y.size, 1 / 8000)
    assert abs(f[np.argmax(spec)] - 1000) < 2
    # 5 kHz would fold to 3 kHz; it must be gone
    assert spec[np.abs(f - 3000) < 20].max() < 1e-3 * spec.max()
    assert abs(np.sqrt(np.mean(y[400:-400] ** 2)) - 0.4 / np.sqrt(2)) < 0.01


def test_upsampling_and_identity() -> None:
    x = _sine(8000, 0.5, 300)
    assert np.array_equal(resample(x, 8000, 8000), x)
    y = resample(x, 8000, 16000)
    assert y.size == 8000 and np.max(np.abs(y[200:-200] - _sine(16000, 0.5, 300)[200:-200])) < 0.01


def test_to_telephony_gives_8k_mono_int16_from_stereo_44k() -> None:
    x = np.stack([_sine(44100, 0.5, 440), _sine(44100, 0.5, 440)], axis=1)
    a = parse_wav(wav_bytes((x * 32767).astype(np.int16).reshape(-1), 44100, 2))
    pcm = to_telephony(a)
    assert pcm.dtype == np.int16 and abs(pcm.size - 4000) <= 1
    assert abs(rms_dbfs(pcm) - 20 * np.log10(0.5 / np.sqrt(2))) < 0.2


def test_encode_frames_pads_to_whole_20ms_frames() -> None:
    frames = encode_frames(np.ones(330, np.int16), "PCMA")
    assert [len(f) for f in frames] == [160, 160, 160]
    assert frames[-1][10:] == g711.silence("PCMA", 150)


def test_normalised_xcorr_finds_lag_and_rejects_unrelated_signals() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 4000)
    c, lag = normalised_xcorr_peak(np.concatenate([np.zeros(37), x]), x, max_lag=100)
    assert c > 0.99 and lag == 37
    c2, _ = normalised_xcorr_peak(rng.normal(0, 1, 4000), x, max_lag=100)
    assert c2 < 0.1


# ---------------------------------------------------------------------------------- mixer


def _frames() -> dict[str, np.ndarray]:
    return {
        CALLER: np.full(160, 100, np.int16),
        AGENT: np.full(160, 20, np.int16),
        SUPERVISOR: np.full(160, 3, np.int16),
    }


def test_listen_supervisor_hears_both_and_nobody_hears_the_supervisor() -> None:
    out = Mixer("listen").mix(_frames())
    assert (out[SUPERVISOR][0], out[AGENT][0], out[CALLER][0]) == (120, 100, 20)


def test_whisper_agent_hears_supervisor_caller_does_not() -> None:
    out = Mixer("whisper").mix(_frames())
    assert (out[SUPERVISOR][0], out[AGENT][0], out[CALLER][0]) == (120, 103, 20)


def test_barge_everyone_hears_everyone_else() -> None:
    out = Mixer("barge").mix(_frames())
    assert (out[SUPERVISOR][0], out[AGENT][0], out[CALLER][0]) == (120, 103, 23)


def test_mixer_saturates_and_treats_missing_or_short_frames_as_silence() -> None:
    m = Mixer("barge")
    out = m.mix(
        {CALLER: np.full(160, 30000, np.int16), AGENT: np.full(160, 30000, np.int16), SUPERVISOR: None}
    )
    assert out[SUPERVISOR][0] == 32767 and out[CALLER][0] == 30000
    out = m.mix({CALLER: np.full(80, -30000, np.int16), AGENT: np.full(160, -30000, np.int16)})
    assert out[SUPERVISOR][0] == -32768 and out[SUPERVISOR][100] == -30000
    assert all(len(v) == 160 for v in out.values())


# ------------------------------------------------------------------------- recording buffer


def test_recording_buffer_aligns_parties_by_timestamp_and_arrival() -> None:
    buf = RecordingBuffer(start=100.0, stereo=True, latency=0.0)
    # the caller talks from the start; the agent's first packet arrives 0.5 s later
    for k in range(50):
        buf.push(0, 100.02 + 0.02 * k, 1, 1000 + 160 * k, np.full(160, 1, np.int16))
    for k in range(25):
        buf.push(1, 100.52 + 0.02 * k, 2, 7 + 160 * k, np.full(160, 2, np.int16))
    out = buf.take(101.0, final=True).reshape(-1, 2)
    assert out.shape == (8000, 2)
    assert (out[:, 0] == 1).all()
    assert (out[:4000, 1] == 0).all() and (out[4000:, 1] == 2).all()


def test_recording_buffer_fills_lost_packets_with_silence_and_mixes_mono() -> None:
    buf = RecordingBuffer(start=0.0, stereo=False, latency=0.0)
    for k in (0, 1, 3):  # packet 2 lost
        buf.push(0, 0.02 * (k + 1), 9, 160 * k, np.full(160, 5, np.int16))
        buf.push(1, 0.02 * (k + 1), 8, 160 * k, np.full(160, 7, np.int16))
    out = buf.take(1.0, final=True)
    assert out.shape == (640,)
    assert (out[:320] == 12).all() and (out[320:480] == 0).all() and (out[480:] == 12).all()


def test_recording_buffer_hands_out_each_sample_once_across_takes() -> None:
    buf = RecordingBuffer(start=0.0, stereo=True, latency=0.1)
    for k in range(100):
        buf.push(0, 0.02 * (k + 1), 1, 160 * k, np.full(160, k % 100, np.int16))
    first = buf.take(1.0)
    assert first.size == 2 * int(0.9 * 8000)
    rest = buf.take(2.0, final=True)
    total = np.concatenate([first, rest]).reshape(-1, 2)
    assert total.shape[0] == 16000 and np.array_equal(total[::160, 0][:100], np.arange(100))


def test_recording_buffer_rebases_when_a_source_jumps_its_timestamps() -> None:
    buf = RecordingBuffer(start=0.0, stereo=True, latency=0.0)
    buf.push(0, 0.02, 1, 0, np.full(160, 1, np.int16))
    buf.push(
        0, 0.04, 1, 10_000_000, np.full(160, 1, np.int16)
    )  # a wild jump must not create hours of silence
    assert buf.take(0.1, final=True).size < 2 * 8000


# ------------------------------------------------------------------------------ port pool


def test_port_pool_hands_out_even_ports_with_rtcp_inside_the_range() -> None:
    pool = PortPool("20001-20008")
    ports = [pool.allocate() for _ in range(3)]
    assert ports == [20002, 20004, 20006]
    with pytest.raises(PortPoolExhausted):
        pool.allocate()
    pool.release(20004)
    pool.release(20004)
    assert pool.available == 1 and pool.allocate() == 20004


def test_port_pool_reuses_freed_ports_last() -> None:
    pool = PortPool((20000, 20009))
    a = pool.allocate()
    pool.release(a)
    assert pool.allocate() != a


@pytest.mark.parametrize("spec", ["20000", "a-b", "500-600", "20000-20000", "20000-70000", "3-1"])
def test_bad_port_ranges_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_port_range(spec)


def test_port_pool_accepts_the_configs_port_range_object() -> None:
    class PortRange:  # the shape of softswitch.config.PortRange
        start, end = 20000, 20003

    assert parse_port_range(PortRange()) == (20000, 20003)
    assert PortPool(PortRange()).capacity == 2
