"""Chinese read-out rules: turn values (amounts, numbers, dates, phone numbers…) into the words
a 95598 caller hears.

Pure functions, no I/O. The output is plain Chinese text made only of a small alphabet of
syllables (see :data:`UNIT_ALPHABET`) so that the same text can be spoken by TTS or composed
from human-recorded units (:mod:`ivr.speech.units`). It never contains Arabic numerals: espeak
reads ``1234567890`` as a quantity and drops the 点 in ``123.45``.

Why not cn2an: it has no digit-by-digit mode, no 幺 for 1 in numbers, no 元/角/分 wording with
整, and its 两/二 choice is not configurable; the rules below are small enough to own.

Rules (decisions made here, documented in ``docs/speech.md``):

- **digits / phone** — read digit by digit, 1 as 幺 and 0 as 零; groups are separated by
  "，" (a short pause). Up to 5 digits form one group (95598, 110). Longer runs are cut into
  groups of 3 or 4 with the shorter groups first (7 → 3-4, 8 → 4-4, 10 → 3-3-4, 11 → 3-4-4,
  which is also the natural grouping of an 11-digit mobile number). Separators in the input
  (space, ``-``) are kept as group boundaries. ``phone`` also knows Chinese area codes: a
  number starting with 0 is read as area code (3 digits for 010 and 02x, else 4) then the
  local number; 86 before an 11-digit mobile number is read as a country code.
- **integer** — standard reading with 万/亿 sections: 十 alone for 10–19 at the start (十,
  十五, 十万) but 一十 inside a number (一百一十). Zeros follow the school rule
  "每级末尾的0都不读，其余数位上连续有几个0都只读一个零": one 零 for a run of zeros inside a
  section, at the start of a section or for a whole zero section (一万零一十, 一亿零五千),
  none for the trailing zeros of a section (十万一千, 一千万五千). 两 for a 2 in the 千
  position (两千, 一万两千) and for a lone 2 before 万/亿 (两万, 两亿); 二 elsewhere: 二百 is
  the broadcast reading and matches the 95598 prompt style (二百三十元整), 二十, standalone 二.
- **number** — integer part as above, then 点 and the decimals digit by digit (一 for 1, not
  幺); trailing decimal zeros are dropped (2.50 → 二点五); negatives start with 负.
- **amount** — 元/角/分 as on Chinese cheques: 整 when there are no 角 and 分
  (230.00 → 二百三十元整), zero units skipped, one 零 for a silent 0 before a non-zero 角/分
  (12.05 → 十二元零五分, 100.30 → 一百元零三角), no 元 when below one yuan (0.50 → 五角);
  a negative amount starts with 负. More than two (non-zero) decimal places is an error, never
  rounded silently.
- **balance** — an account balance worded for the caller: 余额… when ≥ 0, 欠费… when
  negative (-35.2 → 欠费三十五元二角), so a template reads "您的账户{balance}".
- **date** — 年月日 with year digits one by one and 〇 for zero (二〇二六年十一月二十三日),
  as in GB/T 15835 written dates; 〇 is pronounced líng like 零.
- **time** — 24-hour clock with 点/分: 十四点零五分, whole hours 十四点整, 两点 for 2 o'clock,
  seconds as 秒 when given and non-zero.
- **percent** — 百分之 + number (95.5 → 百分之九十五点五); 负百分之… for negatives.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "SLOT_KINDS",
    "UNIT_ALPHABET",
    "ReadoutError",
    "amount",
    "balance",
    "date",
    "digits",
    "integer",
    "number",
    "percent",
    "phone",
    "say",
    "time",
]

PAUSE = "，"

_DIGIT = "零一二三四五六七八九"
_PHONE_DIGIT = "零幺二三四五六七八九"
_YEAR_DIGIT = "〇一二三四五六七八九"

#: Every character any read-out except ``text`` can produce ("，" is a pause, not a syllable).
UNIT_ALPHABET = frozenset(
    _DIGIT + _PHONE_DIGIT + _YEAR_DIGIT + "两十百千万亿点负元角分整年月日秒余额欠费之" + PAUSE
)

SLOT_KINDS = frozenset(
    {"amount", "balance", "digits", "phone", "number", "integer", "date", "time", "percent", "text"}
)


class ReadoutError(ValueError):
    """A value that cannot be read out as the requested kind."""

    def __init__(self, kind: str, value: Any, problem: str) -> None:
        super().__init__(f"{kind}: {value!r} {problem}")
        self.kind = kind
        self.value = value


# --- digit strings ------------------------------------------------------------------------

_DIGIT_RUN = re.compile(r"[0-9]+")
_DIGITS_INPUT = re.compile(r"\+?[0-9]+(?:[ \-][0-9]+)*")


def _digit_groups(kind: str, value: Any) -> list[str]:
    """The runs of digits in ``value`` as the caller wrote them (separators: space and ``-``)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ReadoutError(kind, value, "is not a digit string")
    if isinstance(value, int):
        if value < 0:
            raise ReadoutError(kind, value, "is negative")
        value = str(value)
    text = value.strip()
    if not _DIGITS_INPUT.fullmatch(text):
        raise ReadoutError(kind, value, "is not a digit string (only 0-9, spaces and '-')")
    return _DIGIT_RUN.findall(text)


def _split_run(run: str) -> list[str]:
    """Cut a run of digits into groups: ≤ 5 digits stay whole, else groups of 3–4, short first."""
    n = len(run)
    if n <= 5:
        return [run]
    count = -(-n // 4)  # ceil(n / 4): every group gets 3 or 4 digits
    fours = n - 3 * count
    sizes = [3] * (count - fours) + [4] * fours
    groups, start = [], 0
    for size in sizes:
        groups.append(run[start : start + size])
        start += size
    return groups


def _read_groups(groups: list[str]) -> str:
    return PAUSE.join("".join(_PHONE_DIGIT[int(d)] for d in group) for group in groups)


def digits(value: str | int) -> str:
    """An account or other number digit by digit: ``"3201234567"`` → 三二零，幺二三，四五六七.

    1 reads 幺 and 0 reads 零; groups are separated by "，". Separators in the input (space,
    ``-``) are kept as group boundaries; unseparated runs longer than 5 digits are cut into
    groups of 3 or 4 digits (shorter groups first; an 11-digit run becomes 3-4-4).
    """
    groups: list[str] = []
    for run in _digit_groups("digits", value):
        groups.extend(_split_run(run))
    return _read_groups(groups)


def phone(value: str | int) -> str:
    """A telephone number digit by digit, grouped as Chinese numbers are spoken.

    Mobile 13812345678 → 幺三八，幺二三四，五六七八; landline with area code 01088886666 →
    零幺零，八八八八，六六六六, 057187654321 → 零五七幺，八七六五，四三二幺; service numbers
    (95598, 110) as one group; +8613812345678 → 八六，幺三八，幺二三四，五六七八. A leading ``+``
    is ignored; separators in the input are kept.
    """
    runs = _digit_groups("phone", value)
    groups: list[str] = []
    if len(runs) == 1 and len(runs[0]) == 13 and runs[0].startswith("861"):
        runs = ["86", runs[0][2:]]  # country code before a mobile number
    if len(runs) == 1 and runs[0].startswith("0") and 10 <= len(runs[0]) <= 12:
        run = runs[0]
        area = 3 if run[1] in "12" else 4
        groups.append(run[:area])
        groups.extend(_split_run(run[area:]))
    else:
        for run in runs:
            groups.extend(_split_run(run))
    return _read_groups(groups)


# --- integers -----------------------------------------------------------------------------

_YI = 10**8
_WAN = 10**4


def _section(n: int, leading: bool) -> str:
    """0 < n < 10000 without its leading zeros; ``leading``: it starts the whole number."""
    out: list[str] = []
    zero_pending = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // value % 10
        if d == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        if unit == "十" and d == 1 and leading and not out:
            out.append("十")  # 十五, 十万 — but 一百一十, 一万零一十
        elif unit == "千" and d == 2:
            out.append("两千")
        else:
            out.append(_DIGIT[d] + unit)
    return "".join(out)


def _positive(n: int, leading: bool) -> str:
    """0 < n, any size: sections of 亿 (recursive: 一万亿, 一亿亿) and 万."""
    for base, unit in ((_YI, "亿"), (_WAN, "万")):
        if n >= base:
            high, low = divmod(n, base)
            head = "两" if high == 2 else _positive(high, leading)
            if low == 0:
                return head + unit
            zero = "零" if low < base // 10 else ""
            return head + unit + zero + _positive(low, False)
    return _section(n, leading)


def integer(n: int) -> str:
    """A whole number: 10 → 十, 110 → 一百一十, 2000 → 两千, 200 → 二百, 10010 → 一万零一十."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ReadoutError("integer", n, "is not an integer")
    if n == 0:
        return "零"
    if n < 0:
        return "负" + _positive(-n, True)
    return _positive(n, True)


# --- decimals -----------------------------------------------------------------------------

_DECIMAL_INPUT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")


def _decimal(kind: str, value: Any) -> Decimal:
    """``value`` (int, float, Decimal or a numeric string, ``1,234.5`` allowed) as a Decimal."""
    if isinstance(value, bool):
        raise ReadoutError(kind, value, "is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ReadoutError(kind, value, "is not a finite number")
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ReadoutError(kind, value, "is not a finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text or text in "+-." or not _DECIMAL_INPUT.fullmatch(text) or text[-1] == ".":
            raise ReadoutError(kind, value, "is not a number")
        try:
            return Decimal(text.replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the pattern already excludes it
            raise ReadoutError(kind, value, "is not a number") from None
    raise ReadoutError(kind, value, "is not a number")


def _fraction_digits(d: Decimal) -> tuple[int, str]:
    """|d| split into its integer part and its decimal digits without trailing zeros."""
    _, digit_tuple, exponent = abs(d).as_tuple()
    text = "".join(map(str, digit_tuple))
    if exponent >= 0:
        return int(text) * 10**exponent, ""
    places = -exponent
    text = text.rjust(places + 1, "0")
    return int(text[:-places]), text[-places:].rstrip("0")


def _unsigned_number(d: Decimal) -> str:
    whole, fraction = _fraction_digits(d)
    spoken = integer(whole)
    if fraction:
        spoken += "点" + "".join(_DIGIT[int(c)] for c in fraction)
    return spoken


def number(value: float | Decimal | str) -> str:
    """A quantity: 3.14 → 三点一四, -0.5 → 负零点五, 2.50 → 二点五, 1,200 → 一千二百."""
    d = _decimal("number", value)
    spoken = _unsigned_number(d)
    return "负" + spoken if d < 0 and spoken != "零" else spoken


# --- money --------------------------------------------------------------------------------

def _fen(kind: str, value: Any) -> int:
    """``value`` in 元 as a whole number of 分 (exact); more than two decimal places is an error."""
    if isinstance(value, float):
        _decimal(kind, value)  # rejects nan/inf
        rounded = round(value, 2)
        if abs(value - rounded) > 1e-6:
            raise ReadoutError(kind, value, "has more than two decimal places (分)")
        d = Decimal(repr(rounded))
    else:
        d = _decimal(kind, value)
    sign, digit_tuple, exponent = d.as_tuple()
    mantissa = int("".join(map(str, digit_tuple)))
    shift = exponent + 2
    if shift >= 0:
        fen = mantissa * 10**shift
    else:
        fen, remainder = divmod(mantissa, 10**-shift)
        if remainder:
            raise ReadoutError(kind, value, "has more than two decimal places (分)")
    return -fen if sign else fen


def _yuan_jiao_fen(total_fen: int) -> str:
    """Non-negative amount in 分 read as 元/角/分."""
    yuan, rest = divmod(total_fen, 100)
    jiao, fen = divmod(rest, 10)
    if rest == 0:
        return integer(yuan) + "元整"
    out = ""
    if yuan:
        out = integer(yuan) + "元"
    if jiao:
        if yuan and yuan % 10 == 0:
            out += "零"  # 一百元零三角: the silent 0 in the 元 place
        out += _DIGIT[jiao] + "角"
    if fen:
        if yuan and not jiao:
            out += "零"  # 十二元零五分
        out += _DIGIT[fen] + "分"
    return out


def amount(value: float | Decimal | str) -> str:
    """Money in 元: 230.00 → 二百三十元整, 12.05 → 十二元零五分, 0.50 → 五角,
    -35.2 → 负三十五元二角."""
    fen = _fen("amount", value)
    return ("负" if fen < 0 else "") + _yuan_jiao_fen(abs(fen))


def balance(value: float | Decimal | str) -> str:
    """An account balance for the caller: 35.2 → 余额三十五元二角, -35.2 → 欠费三十五元二角."""
    fen = _fen("balance", value)
    return ("欠费" if fen < 0 else "余额") + _yuan_jiao_fen(abs(fen))


def percent(value: float | Decimal | str) -> str:
    """A percentage given in percent: 95.5 → 百分之九十五点五, "12%" → 百分之十二,
    -3 → 负百分之三."""
    if isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
    d = _decimal("percent", value)
    spoken = "百分之" + _unsigned_number(d)
    return "负" + spoken if d < 0 and spoken != "百分之零" else spoken


# --- dates and times ----------------------------------------------------------------------

_DATE_INPUT = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})")
_TIME_INPUT = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


# Callers hear times in the hotline's own time zone: China Standard Time, UTC+8, no DST.
LOCAL_TIME = _dt.timezone(_dt.timedelta(hours=8), "CST")


def _local(value: _dt.datetime) -> _dt.datetime:
    """A time-zone-aware moment as the caller's wall clock shows it (naive ones are taken as is)."""
    return value.astimezone(LOCAL_TIME) if value.tzinfo is not None else value


def date(value: _dt.date | str) -> str:
    """A calendar date: ``"2026-11-23"`` (or ``/``, ``.``; or a date) → 二〇二六年十一月二十三日.

    An aware datetime is read in China time (UTC+8)."""
    if isinstance(value, _dt.datetime):
        value = _local(value).date()
    if isinstance(value, str):
        match = _DATE_INPUT.fullmatch(value.strip())
        if not match:
            raise ReadoutError("date", value, "is not a date (expected YYYY-MM-DD)")
        try:
            day = _dt.date(int(match[1]), int(match[3]), int(match[4]))
        except ValueError as exc:
            raise ReadoutError("date", value, f"is not a valid date ({exc})") from None
    elif isinstance(value, _dt.date):
        day = value
    else:
        raise ReadoutError("date", value, "is not a date (expected YYYY-MM-DD)")
    year = "".join(_YEAR_DIGIT[int(c)] for c in str(day.year))
    return f"{year}年{integer(day.month)}月{integer(day.day)}日"


def time(value: _dt.time | str) -> str:
    """A clock time, 24-hour: ``"14:05"`` → 十四点零五分, ``"14:00"`` → 十四点整,
    ``"2:30"`` → 两点三十分. An aware datetime is read in China time (UTC+8)."""
    if isinstance(value, _dt.datetime):
        value = _local(value).time()
    if isinstance(value, str):
        match = _TIME_INPUT.fullmatch(value.strip())
        if not match:
            raise ReadoutError("time", value, "is not a time (expected HH:MM or HH:MM:SS)")
        hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ReadoutError("time", value, "is not a valid time of day")
    elif isinstance(value, _dt.time):
        hour, minute, second = value.hour, value.minute, value.second
    else:
        raise ReadoutError("time", value, "is not a time (expected HH:MM or HH:MM:SS)")
    spoken = ("两" if hour == 2 else integer(hour)) + "点"
    if minute == 0 and second == 0:
        return spoken + "整"
    spoken += "零分" if minute == 0 else ("零" if minute < 10 else "") + integer(minute) + "分"
    if second:
        spoken += ("零" if second < 10 else "") + integer(second) + "秒"
    return spoken


# --- dispatch -----------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


_READERS: dict[str, Callable[[Any], str]] = {
    "amount": amount,
    "balance": balance,
    "digits": digits,
    "phone": phone,
    "number": number,
    "integer": lambda value: integer(_as_int(value)),
    "date": date,
    "time": time,
    "percent": percent,
    "text": _text,
}
assert frozenset(_READERS) == SLOT_KINDS


def _as_int(value: Any) -> int:
    """Integers, and strings of an integer (``"12"``, ``"-3"``, ``"1,200"``) for templates."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        d = _decimal("integer", value)
        if d == d.to_integral_value() and "." not in value:
            return int(d)
    raise ReadoutError("integer", value, "is not an integer")


def say(kind: str, value: Any) -> str:
    """Read ``value`` out as ``kind`` (one of :data:`SLOT_KINDS`); ``text`` passes through."""
    reader = _READERS.get(kind)
    if reader is None:
        raise ReadoutError(
            "say", kind, f"is not a read-out kind (expected one of {', '.join(sorted(SLOT_KINDS))})"
        )
    return reader(value)
