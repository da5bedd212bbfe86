"""G.711 lookup tables against known values from the ITU/Sun reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import g711


@pytest.mark.parametrize(
    ("code", "linear"),
    [(0xFF, 0), (0x7F, 0), (0x00, -32124), (0x80, 32124), (0xFE, 8), (0x7E, -8), (0xEF, 132), (0x8F, 16764)],
)
def test_ulaw_decode_matches_reference_values(code: int, linear: int) -> None:
    assert int(g711.ULAW_DECODE[code]) == linear


@pytest.mark.parametrize(
    ("code", "linear"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0xC5, 264), (0x80, 5504)],
)
def test_alaw_decode_matches_reference_values(code: int, linear: int) -> None:
    assert int(g711.ALAW_DECODE[code]) == linear


@pytest.mark.parametrize(
    ("linear", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7E, 0x55),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
    ],
)
def test_encoders_match_reference_codes(linear: int, ulaw: int, alaw: int) -> None:
    pcm = np.array([linear], dtype=np.int16)
    assert g711.ulaw_encode(pcm) == bytes([ulaw])
    assert g711.alaw_encode(pcm) == bytes([alaw])


def test_every_code_survives_decode_then_encode() -> None:
    codes = bytes(range(256))
    assert g711.alaw_encode(g711.alaw_decode(codes)) == codes
    # 0x7F is mu-law's negative zero; it decodes to 0, which encodes as the positive zero 0xFF
    expected = bytes(0xFF if c == 0x7F else c for c in codes)
    assert g711.ulaw_encode(g711.ulaw_decode(codes)) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(-32768, 32767))
def test_quantisation_error_is_bounded_by_the_segment_step(x: int) -> None:
    pcm = np.array([x], dtype=np.int16)
    for enc, dec in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        y = int(dec(enc(pcm))[0])
        # the step doubles per segment: the error is half a step, at most 1/16 of the magnitude (or 16)
        assert abs(y - x) <= max(16, abs(x) / 16)


def test_law_translation_tables_equal_decoding_then_reencoding() -> None:
    codes = bytes(range(256))
    assert codes.translate(g711.ULAW_TO_ALAW) == g711.alaw_encode(g711.ulaw_decode(codes))
    assert codes.translate(g711.ALAW_TO_ULAW) == g711.ulaw_encode(g711.alaw_decode(codes))


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        g711.ULAW_DECODE[0] = 1


def test_silence_decodes_to_zero_and_unknown_codec_is_rejected() -> None:
    assert not g711.decode("PCMU", g711.silence("PCMU", 160)).any()
    assert np.abs(g711.decode("PCMA", g711.silence("PCMA", 160))).max() <= 8
    with pytest.raises(ValueError):
        g711.encode("G729", np.zeros(1, np.int16))
