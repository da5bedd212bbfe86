"""Japanese number handling: cleaning, 184/186, classification, E.164 both ways, display form."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.calls.numbers import (
    JapaneseNumber,
    Kind,
    NumberError,
    Presentation,
    clean,
    format_display,
    is_dialable,
    normalise,
    parse,
    split_presentation,
    to_e164,
    to_national,
)


def test_to_e164_and_back_for_a_tokyo_number():
    assert to_e164("0312345678") == "+81312345678"
    assert to_national("+81312345678") == "0312345678"


@pytest.mark.parametrize(
    ("typed", "national"),
    [
        ("03-1234-5678", "0312345678"),
        ("03 1234 5678", "0312345678"),
        ("03(1234)5678", "0312345678"),
        ("03.1234.5678", "0312345678"),
        ("０３－１２３４－５６７８", "0312345678"),  # full width, as Japanese IMEs type it
        ("０３（１２３４）５６７８", "0312345678"),
        ("03ー1234ー5678", "0312345678"),  # katakana long-vowel mark used as a dash
        ("03\u20101234\u22125678", "0312345678"),  # Unicode hyphen and minus sign
        ("03\u30001234\u30005678", "0312345678"),  # ideographic space
        ("＋８１ ３ １２３４ ５６７８", "0312345678"),
        ("+81 (0)3-1234-5678", "0312345678"),  # the business-card form: the (0) is not dialled
        ("+81-90-1234-5678", "09012345678"),
        ("010-81-3-1234-5678", "0312345678"),  # international prefix back into Japan
    ],
)
def test_separators_full_width_digits_and_e164_forms_normalise_to_the_national_number(typed, national):
    assert normalise(typed) == national


@pytest.mark.parametrize(
    ("number", "kind", "display"),
    [
        ("0312345678", Kind.GEOGRAPHIC, "03-1234-5678"),  # Tokyo
        ("0612345678", Kind.GEOGRAPHIC, "06-1234-5678"),  # Osaka
        ("0451234567", Kind.GEOGRAPHIC, "045-123-4567"),  # Yokohama
        ("0521234567", Kind.GEOGRAPHIC, "052-123-4567"),  # Nagoya
        ("0111234567", Kind.GEOGRAPHIC, "011-123-4567"),  # Sapporo
        ("0921234567", Kind.GEOGRAPHIC, "092-123-4567"),  # Fukuoka
        ("0422123456", Kind.GEOGRAPHIC, "0422-12-3456"),  # Musashino
        ("0466123456", Kind.GEOGRAPHIC, "0466-12-3456"),  # Fujisawa
        ("0499212345", Kind.GEOGRAPHIC, "04992-1-2345"),  # Izu Oshima
        ("0429123456", Kind.GEOGRAPHIC, "04-2912-3456"),  # Tokorozawa: 04 inside the 042 range
        ("0120123456", Kind.TOLL_FREE, "0120-123-456"),
        ("08001234567", Kind.TOLL_FREE, "0800-123-4567"),
        ("0570123456", Kind.NAVI_DIAL, "0570-123-456"),
        ("0180123456", Kind.PREMIUM, "0180-123-456"),
        ("05012345678", Kind.IP_PHONE, "050-1234-5678"),
        ("07012345678", Kind.MOBILE, "070-1234-5678"),
        ("08012345678", Kind.MOBILE, "080-1234-5678"),
        ("09012345678", Kind.MOBILE, "090-1234-5678"),
        ("02012345678", Kind.M2M, "020-1234-5678"),
        ("110", Kind.SERVICE, "110"),
        ("119", Kind.SERVICE, "119"),
        ("01012125550100", Kind.INTERNATIONAL, "+12125550100"),
    ],
)
def test_each_kind_is_recognised_and_shown_in_its_usual_display_form(number, kind, display):
    parsed = parse(number)
    assert parsed.kind is kind
    assert parsed.display == display == format_display(number)


@pytest.mark.parametrize(
    ("national", "e164"),
    [
        ("0312345678", "+81312345678"),
        ("0120123456", "+81120123456"),
        ("08001234567", "+818001234567"),
        ("0570123456", "+81570123456"),
        ("05012345678", "+815012345678"),
        ("09012345678", "+819012345678"),
        ("01012125550100", "+12125550100"),
        ("010442071234567", "+442071234567"),
    ],
)
def test_e164_conversion_is_exact_both_ways(national, e164):
    assert to_e164(national) == e164
    assert to_national(e164) == national


def test_a_foreign_e164_number_is_dialled_with_the_international_prefix():
    number = parse("+1 212 555 0100")
    assert number.kind is Kind.INTERNATIONAL
    assert number.national == "01012125550100"


@pytest.mark.parametrize(
    ("typed", "presentation", "national"),
    [
        ("1840312345678", Presentation.WITHHOLD, "0312345678"),
        ("184-03-1234-5678", Presentation.WITHHOLD, "0312345678"),
        ("１８４０９０１２３４５６７８", Presentation.WITHHOLD, "09012345678"),
        ("184+81312345678", Presentation.WITHHOLD, "0312345678"),
        ("1860312345678", Presentation.PRESENT, "0312345678"),
        ("186 0120 123 456", Presentation.PRESENT, "0120123456"),
        ("0312345678", Presentation.DEFAULT, "0312345678"),
    ],
)
def test_184_withholds_and_186_presents_the_caller_id(typed, presentation, national):
    number = parse(typed)
    assert number.presentation is presentation
    assert number.national == national


def test_184_and_186_alone_or_before_a_non_number_are_not_taken_as_prefixes():
    assert split_presentation("184") == (Presentation.DEFAULT, "184")
    assert split_presentation("1860") == (Presentation.DEFAULT, "1860")
    assert split_presentation("1841") == (Presentation.DEFAULT, "1841")


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("", "no digits"),
        ("---", "no digits"),
        ("abc", "unexpected 'a'"),
        ("03#1234", "unexpected '#'"),
        ("03*12345678", "unexpected '*'"),
        ("03+12345678", "unexpected '+'"),
        ("031234567", "have 10 digits, not 9"),
        ("03123456789", "have 10 digits, not 11"),
        ("0901234567", "have 11 digits, not 10"),
        ("090123456789", "have 11 digits, not 12"),
        ("012012345", "have 10 digits, not 9"),
        ("0800123456", "have 11 digits, not 10"),
        ("057012345", "have 10 digits, not 9"),
        ("0501234567", "have 11 digits, not 10"),
        ("0601234567", "not an area code"),
        ("0012345678", "carrier selection"),
        ("1101", "3 digits"),
        ("312345678", "starts with 0"),
        ("81312345678", "starts with 0"),
        ("+81", "no number"),
        ("+0312345678", "never starts with 0"),
        ("+123", "7 to 15 digits"),
        ("+1234567890123456", "7 to 15 digits"),
        ("٠٣١٢٣٤٥٦٧٨", "not a telephone number"),  # Arabic-Indic digits are not accepted
    ],
)
def test_invalid_numbers_are_refused_with_a_clear_reason(typed, fragment):
    with pytest.raises(NumberError, match=fragment.replace("+", r"\+").replace("*", r"\*")):
        parse(typed)
    assert not is_dialable(typed)


def test_service_numbers_have_no_e164_form():
    assert parse("119").e164 is None
    with pytest.raises(NumberError, match="service number"):
        to_e164("110")


def test_clean_keeps_only_a_leading_plus_and_digits():
    assert clean("＋８１－３－１２３４－５６７８") == "+81312345678"
    assert clean(" 03 1234 5678 ") == "0312345678"


def test_is_dialable_tells_numbers_from_user_names():
    assert is_dialable("0312345678")
    assert not is_dialable("u0001")
    assert not is_dialable("alice")


_national_numbers = st.one_of(
    st.from_regex(r"0[3-6][1-9][0-9]{7}", fullmatch=True),
    st.from_regex(r"0[7-9]0[1-9][0-9]{7}", fullmatch=True),
    st.from_regex(r"0120[0-9]{6}", fullmatch=True),
    st.from_regex(r"0800[0-9]{7}", fullmatch=True),
    st.from_regex(r"050[1-9][0-9]{7}", fullmatch=True),
)


@settings(max_examples=200, deadline=None)
@given(_national_numbers)
def test_national_and_e164_round_trip_for_every_valid_number(national):
    e164 = to_e164(national)
    assert e164.startswith("+81") and e164[3] != "0"
    assert to_national(e164) == national
    assert normalise(format_display(national)) == national


@settings(max_examples=200, deadline=None)
@given(_national_numbers, st.lists(st.sampled_from(["-", " ", "－", "ー", "(", ")", "\u3000"]), max_size=4),
       st.booleans())
def test_separators_and_width_never_change_the_number(national, separators, wide):
    text = national
    for i, sep in enumerate(separators):
        pos = 1 + (i * 3) % (len(text) - 1)
        text = text[:pos] + sep + text[pos:]
    if wide:
        text = text.translate({ord(d): chr(0xFF10 + int(d)) for d in "0123456789"})
    assert parse(text) == JapaneseNumber(national, parse(national).kind)
