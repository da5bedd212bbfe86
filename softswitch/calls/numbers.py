"""Japanese telephone numbers: cleaning, classification, E.164 both ways, 184/186, display form.

Pure functions over strings; no state. Numbers are kept in *national* form inside the switch
('0312345678', '09012345678', '110', or '010' + E.164 digits for a foreign number) and converted
to E.164 ('+81312345678') where a carrier wants it.

What people type is accepted: hyphens, spaces, dots and brackets ('03(1234)5678'), full-width
digits and punctuation ('０３－１２３４－５６７８', which Japanese IMEs produce), the katakana
long-vowel mark used as a dash ('03ー1234ー5678'), '+81 (0)3 ...', and the 184 (withhold caller
ID) / 186 (present caller ID) prefixes. Anything else, or a wrong length for the number's kind,
raises NumberError with a message an operator can act on.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "JapaneseNumber", "Kind", "NumberError", "Presentation", "clean", "format_display", "is_dialable",
    "normalise", "parse", "split_presentation", "to_e164", "to_national",
]

COUNTRY_CODE = "81"
#: Japan's international call prefix (the 00xx carrier-selection prefixes are not supported).
INTERNATIONAL_PREFIX = "010"

# Separators people and IMEs put in numbers. NFKC has already folded the full-width forms
# (U+FF0D, U+FF08...) into ASCII; what remains are dashes NFKC keeps and the katakana long-vowel
# mark that an IME gives for '-' in kana mode.
_SEPARATORS = re.compile(r"[\s\-().\u2010-\u2015\u2212\u30fc\uff70\u2043\ufe63/]")
_DIGITS = re.compile(r"(?:18[46])?\+?[0-9]+")  # 184/186 may precede a +81 number


class NumberError(ValueError):
    """A string that is not a valid Japanese (or E.164) telephone number; the message says why."""


class Kind(StrEnum):
    """What a number reaches: it decides its length and its display form."""

    GEOGRAPHIC = "geographic"  # 0AB-J fixed lines: 03-xxxx-xxxx, 0xx-xxx-xxxx, ...
    MOBILE = "mobile"  # 070 / 080 / 090
    IP_PHONE = "ip_phone"  # 050
    TOLL_FREE = "toll_free"  # 0120 (10 digits), 0800 (11 digits)
    NAVI_DIAL = "navi_dial"  # 0570, caller-paid shared-cost numbers
    PREMIUM = "premium"  # 0180 (telephone voting), 0990 (former dial Q2)
    M2M = "m2m"  # 020: M2M and pagers
    SERVICE = "service"  # three-digit 1XX: 110 police, 119 fire/ambulance, 117 time, ...
    INTERNATIONAL = "international"  # not Japanese: dialled as 010 + E.164 digits


class Presentation(StrEnum):
    """What the caller asked for with a prefix: 184 withholds the caller ID, 186 presents it."""

    DEFAULT = "default"
    WITHHOLD = "withhold"
    PRESENT = "present"


# prefix -> (kind, total national length). Longest prefix wins (0120 before 012x geographic).
_NON_GEOGRAPHIC: dict[str, tuple[Kind, int]] = {
    "0120": (Kind.TOLL_FREE, 10),
    "0800": (Kind.TOLL_FREE, 11),
    "0570": (Kind.NAVI_DIAL, 10),
    "0180": (Kind.PREMIUM, 10),
    "0990": (Kind.PREMIUM, 10),
    "050": (Kind.IP_PHONE, 11),
    "070": (Kind.MOBILE, 11),
    "080": (Kind.MOBILE, 11),
    "090": (Kind.MOBILE, 11),
    "020": (Kind.M2M, 11),
}

# Area codes (with the leading 0) for the display form: the 2- and 3-digit codes and common 4- and
# 5-digit ones. Longest match wins; a geographic number matching none is shown as a 4-digit code
# (the commonest length). Some entries are longer than their code: 04-29xx and 04-71xx are the
# two-digit code 04 inside ranges where 042x/047x are other codes.
_AREA_CODE_LENGTH: dict[str, int] = {
    "03": 2, "06": 2, "0429": 2, "0471": 2,
    **{c: 3 for c in (
        "011", "017", "018", "019", "022", "023", "024", "025", "026", "027", "028", "029",
        "042", "043", "044", "045", "046", "047", "048", "049", "052", "053", "054", "055", "058",
        "059", "072", "073", "075", "076", "077", "078", "079", "082", "083", "084", "086", "087",
        "088", "089", "092", "093", "095", "096", "097", "098", "099",
    )},
    **{c: 4 for c in (
        "0123", "0134", "0138", "0143", "0144", "0154", "0155", "0157", "0166", "0172", "0178",
        "0263", "0265", "0266", "0268", "0276", "0277", "0422", "0428", "0436", "0438", "0439",
        "0460", "0463", "0465", "0466", "0467", "0470", "0475", "0476", "0479", "0480", "0493",
        "0494", "0495", "0532", "0545", "0557", "0564", "0565", "0566", "0739", "0742", "0749",
        "0776", "0852", "0857", "0859", "0942", "0952", "0956", "0985",
    )},
    **{c: 5 for c in ("01267", "04992", "04994", "04996", "04998", "05979", "09496", "09802")},
}


@dataclass(frozen=True, slots=True)
class JapaneseNumber:
    """A validated number: its national form, its kind and the caller's 184/186 choice."""

    national: str
    kind: Kind
    presentation: Presentation = Presentation.DEFAULT

    @property
    def e164(self) -> str | None:
        """'+81312345678'; None for three-digit service numbers, which have no E.164 form."""
        if self.kind is Kind.SERVICE:
            return None
        if self.kind is Kind.INTERNATIONAL:
            return "+" + self.national[len(INTERNATIONAL_PREFIX):]
        return "+" + COUNTRY_CODE + self.national[1:]

    @property
    def display(self) -> str:
        """The form printed on business cards: 03-1234-5678, 0120-123-456, 090-1234-5678."""
        return _display(self)


def clean(text: str) -> str:
    """Fold full-width characters and drop separators: '０３－１２３４ ５６７８' -> '0312345678'.

    A '+' is kept only at the start (or after 184/186). Raises NumberError on anything that is not a digit or
    a separator (letters, '#', '*', a '+' in the middle).
    """
    folded = unicodedata.normalize("NFKC", text)
    stripped = _SEPARATORS.sub("", folded)
    if not stripped:
        raise NumberError(f"{text!r} holds no digits")
    if not _DIGITS.fullmatch(stripped):
        bad = next((ch for ch in stripped.lstrip("+") if not ch.isdigit() or not ch.isascii()), "+")
        raise NumberError(f"{text!r} is not a telephone number: unexpected {bad!r}")
    return stripped


def split_presentation(digits: str) -> tuple[Presentation, str]:
    """Split a leading 184 (withhold) or 186 (present) from a cleaned number.

    Only when a number follows (starting with 0 or +): '184' or '1860' alone are left alone.
    """
    for prefix, presentation in (("184", Presentation.WITHHOLD), ("186", Presentation.PRESENT)):
        rest = digits[len(prefix):]
        if digits.startswith(prefix) and rest[:1] in ("0", "+") and len(rest) > 1:
            return presentation, rest
    return Presentation.DEFAULT, digits


def parse(text: str) -> JapaneseNumber:
    """Clean, split 184/186, validate and classify a dialled or presented number.

    Accepts national ('03-1234-5678'), E.164 ('+81 3 1234 5678', '+81 (0)3 ...'), international
    dialling ('010 1 212 555 0100'), foreign E.164 ('+1 212 555 0100') and 1XX service numbers.
    """
    presentation, digits = split_presentation(clean(text))
    national = _to_national_digits(digits, text)
    return JapaneseNumber(national, _classify(national, text), presentation)


def normalise(text: str) -> str:
    """The national form of a number, 184/186 dropped: '+81-3-1234-5678' -> '0312345678'."""
    return parse(text).national


def to_e164(text: str) -> str:
    """'0312345678' -> '+81312345678'. Raises NumberError for service numbers (110, 119, ...)."""
    number = parse(text)
    e164 = number.e164
    if e164 is None:
        raise NumberError(f"{number.national} is a service number and has no E.164 form")
    return e164


def to_national(text: str) -> str:
    """'+81312345678' -> '0312345678'; a foreign '+12125550100' -> '01012125550100'."""
    return parse(text).national


def format_display(text: str) -> str:
    """The display form of any accepted number: '0312345678' -> '03-1234-5678'."""
    return parse(text).display


def is_dialable(text: str) -> bool:
    """True if `text` parses as a number (routing uses this to tell numbers from user names)."""
    try:
        parse(text)
    except NumberError:
        return False
    return True


# -- internals ------------------------------------------------------------------------------


def _to_national_digits(digits: str, text: str) -> str:
    if digits.startswith("+"):
        e164 = digits[1:]
        if e164.startswith(COUNTRY_CODE):
            nsn = e164[len(COUNTRY_CODE):]
            # '+81 (0)3 ...' is how many Japanese business cards write it: the 0 is not dialled.
            if nsn.startswith("0"):
                nsn = nsn[1:]
            if not nsn:
                raise NumberError(f"{text!r} has a country code and no number")
            return "0" + nsn
        _check_foreign(e164, text)
        return INTERNATIONAL_PREFIX + e164
    if digits.startswith(INTERNATIONAL_PREFIX):
        e164 = digits[len(INTERNATIONAL_PREFIX):]
        if e164.startswith(COUNTRY_CODE):
            # 010-81-... dialled from Japan to Japan: treat it as the national number.
            return _to_national_digits("+" + e164, text)
        _check_foreign(e164, text)
        return digits
    return digits


def _check_foreign(e164: str, text: str) -> None:
    if e164.startswith("0"):
        raise NumberError(f"{text!r}: a country code never starts with 0")
    # E.164 allows at most 15 digits; the shortest real numbers (small islands) have about 7.
    if not 7 <= len(e164) <= 15:
        raise NumberError(f"{text!r}: an international number has 7 to 15 digits, not {len(e164)}")


def _classify(national: str, text: str) -> Kind:
    if national.startswith(INTERNATIONAL_PREFIX) and len(national) > len(INTERNATIONAL_PREFIX):
        return Kind.INTERNATIONAL
    if national.startswith("1"):
        if len(national) == 3:
            return Kind.SERVICE
        raise NumberError(f"{text!r}: service numbers starting with 1 have 3 digits (110, 119, ...)")
    if not national.startswith("0"):
        raise NumberError(f"{text!r}: a Japanese number starts with 0 (or +81, or is a 1XX service number)")
    if national.startswith("00"):
        raise NumberError(f"{text!r}: carrier selection prefixes (00XX) are not supported; "
                          "dial 010 for international calls")
    for size in (4, 3):
        entry = _NON_GEOGRAPHIC.get(national[:size])
        if entry is not None:
            kind, length = entry
            if len(national) != length:
                raise NumberError(f"{text!r}: {national[:size]} numbers ({kind.value}) have {length} digits, "
                                  f"not {len(national)}")
            return kind
    if national[2:3] == "0" or national[1:2] == "0":
        # 0A0 prefixes are never area codes (060 is reserved, 040/030 unused).
        raise NumberError(f"{text!r}: {national[:3]} is not an area code or a service prefix in use")
    if len(national) != 10:
        raise NumberError(f"{text!r}: geographic (0AB-J) numbers have 10 digits, not {len(national)}")
    return Kind.GEOGRAPHIC


def _area_code_length(national: str) -> int:
    for size in (5, 4, 3, 2):
        length = _AREA_CODE_LENGTH.get(national[:size])
        if length is not None:
            return length
    return 4


def _display(number: JapaneseNumber) -> str:
    n = number.national
    kind = number.kind
    if kind is Kind.SERVICE:
        return n
    if kind is Kind.INTERNATIONAL:
        return f"+{n[len(INTERNATIONAL_PREFIX):]}"
    if kind in (Kind.TOLL_FREE, Kind.NAVI_DIAL, Kind.PREMIUM):
        return f"{n[:4]}-{n[4:7]}-{n[7:]}"  # 0120-123-456, 0800-123-4567
    if kind in (Kind.MOBILE, Kind.IP_PHONE, Kind.M2M):
        return f"{n[:3]}-{n[3:7]}-{n[7:]}"
    # Geographic: area code (2-5 digits), local exchange (4-1 digits), then 4 subscriber digits.
    area = _area_code_length(n)
    return f"{n[:area]}-{n[area:6]}-{n[6:]}"
