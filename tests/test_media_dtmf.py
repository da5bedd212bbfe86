"""RFC 4733 telephone-events and in-band (Goertzel) DTMF detection, sans-IO."""

from __future__ import annotations

import numpy as np
import pytest

from media.dtmf import (
    EVENT_CODES,
    ROWS,
    DtmfDigit,
    InbandDtmfDetector,
    TelephoneEvent,
    TelephoneEventReceiver,
    digit_to_event,
    dtmf_tone,
    goertzel,
    telephone_event_payloads,
)

RNG_SEED = 7


def test_event_payload_known_bytes() -> None:
    # digit 5, end bit, volume 10, duration 800 (100 ms)
    assert TelephoneEvent(5, True, 10, 800).build() == bytes([5, 0x8A, 0x03, 0x20])
    assert TelephoneEvent.parse(bytes([11, 0x0A, 0x00, 0xA0])) == TelephoneEvent(11, False, 10, 160)
    with pytest.raises(ValueError):
        TelephoneEvent.parse(b"\x01\x02")


def test_digit_codes_follow_rfc4733() -> None:
    assert [digit_to_event(d) for d in "09*#AD"] == [0, 9, 10, 11, 12, 15]
    assert digit_to_event("a") == 12
    with pytest.raises(ValueError):
        digit_to_event("E")


def test_sender_emits_updates_then_three_identical_end_packets() -> None:
    payloads = telephone_event_payloads("#", 100)
    events = [TelephoneEvent.parse(p) for p in payloads]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {11}


def test_receiver_reports_each_press_once_despite_redundant_end_packets() -> None:
    rx = TelephoneEventReceiver()
    got: list[DtmfDigit] = []
    for ts, digit in ((1000, "1"), (3000, "2"), (5000, "1")):
        for p in telephone_event_payloads(digit, 120):
            got += rx.feed(ts, p)
    assert got == [
        DtmfDigit("1", 120, "rfc4733"),
        DtmfDigit("2", 120, "rfc4733"),
        DtmfDigit("1", 120, "rfc4733"),
    ]


def test_receiver_reports_a_press_whose_end_packets_were_all_lost() -> None:
    rx = TelephoneEventReceiver()
    updates = telephone_event_payloads("7", 100)[:4]
    got = [d for p in updates for d in rx.feed(1000, p)]
    assert got == []
    assert rx.feed(2600, telephone_event_payloads("8", 60)[0]) == [DtmfDigit("7", 80, "rfc4733")]
    assert rx.flush() == [DtmfDigit("8", 20, "rfc4733")]
    assert rx.flush() == []


def test_receiver_ignores_non_dtmf_events_and_short_payloads() -> None:
    rx = TelephoneEventReceiver()
    assert rx.feed(1, TelephoneEvent(32, True, 10, 800).build()) == []  # fax answer tone event
    assert rx.feed(2, b"\x01") == []


def test_goertzel_agrees_with_the_dft_bin_and_peaks_at_the_tone() -> None:
    x = dtmf_tone("1", 30)[:205].astype(float)
    n = np.arange(205)
    dft = abs(x @ np.exp(-2j * np.pi * 697 * n / 8000)) ** 2
    assert goertzel(x, 697) == pytest.approx(dft, rel=1e-9)
    assert goertzel(x, 697) > 100 * goertzel(x, 852)


def _with_gaps(*parts: np.ndarray) -> np.ndarray:
    gap = np.zeros(600, dtype=np.float64)
    out = [gap]
    for p in parts:
        out += [p.astype(np.float64), gap]
    return np.concatenate(out)


@pytest.mark.parametrize("digit", list(EVENT_CODES))
def test_every_digit_of_the_grid_is_detected_once(digit: str) -> None:
    got = InbandDtmfDetector().feed(_with_gaps(dtmf_tone(digit, 100)))
    assert [d.digit for d in got] == [digit]
    assert 75 <= got[0].duration_ms <= 130


def test_detection_in_20ms_chunks_with_noise_and_twist() -> None:
    rng = np.random.default_rng(RNG_SEED)
    sig = _with_gaps(
        dtmf_tone("3", 80, twist_db=4), dtmf_tone("9", 80, twist_db=-6), dtmf_tone("0", 200, amplitude=2000)
    )
    sig = sig + rng.normal(0, 300, sig.size)  # about 20 dB SNR on the quiet digit
    det = InbandDtmfDetector()
    got = [d.digit for i in range(0, sig.size, 160) for d in det.feed(sig[i : i + 160])] + [
        d.digit for d in det.flush()
    ]
    assert got == ["3", "9", "0"]


def test_excessive_twist_is_rejected() -> None:
    assert InbandDtmfDetector().feed(_with_gaps(dtmf_tone("5", 120, twist_db=12))) == []


def test_single_tones_dial_tone_and_speech_like_noise_are_not_digits() -> None:
    t = np.arange(16000) / 8000
    det = InbandDtmfDetector()
    assert det.feed(8000 * np.sin(2 * np.pi * 1000 * t)) == []  # test tone
    assert det.feed(8000 * np.sin(2 * np.pi * ROWS[0] * t)) == []  # a row tone alone
    assert (
        det.feed(4000 * np.sin(2 * np.pi * 350 * t) + 4000 * np.sin(2 * np.pi * 440 * t)) == []
    )  # dial tone
    assert (
        det.feed(4000 * np.sin(2 * np.pi * 480 * t) + 4000 * np.sin(2 * np.pi * 620 * t)) == []
    )  # busy tone
    rng = np.random.default_rng(RNG_SEED)
    assert det.feed(rng.normal(0, 4000, 80000)) == []
    # a chord of three grid tones (music) has no dominant pair
    chord = 5000 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 770 * t) + np.sin(2 * np.pi * 1209 * t))
    assert det.feed(chord) == []
    assert det.flush() == []


def test_too_quiet_and_too_short_tones_are_ignored() -> None:
    assert InbandDtmfDetector().feed(_with_gaps(dtmf_tone("1", 100, amplitude=200))) == []
    assert InbandDtmfDetector().feed(_with_gaps(dtmf_tone("1", 30))) == []


def test_a_held_key_is_one_digit_with_its_full_duration() -> None:
    got = InbandDtmfDetector().feed(_with_gaps(dtmf_tone("#", 1000)))
    assert len(got) == 1 and 950 <= got[0].duration_ms <= 1050
