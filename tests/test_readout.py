"""Chinese read-out rules: a hand-checked table and properties checked by an independent parser."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.speech import readout
from ivr.speech.readout import SLOT_KINDS, UNIT_ALPHABET, ReadoutError, say

# (kind, value, what the caller hears) — checked by hand against common Mandarin usage.
CASES = [
    # integers: 十 at the start, 一十 inside
    ("integer", 0, "零"),
    ("integer", 1, "一"),
    ("integer", 2, "二"),
    ("integer", 7, "七"),
    ("integer", 10, "十"),
    ("integer", 11, "十一"),
    ("integer", 15, "十五"),
    ("integer", 19, "十九"),
    ("integer", 20, "二十"),
    ("integer", 22, "二十二"),
    ("integer", 99, "九十九"),
    ("integer", 100, "一百"),
    ("integer", 101, "一百零一"),
    ("integer", 110, "一百一十"),
    ("integer", 111, "一百一十一"),
    ("integer", 120, "一百二十"),
    ("integer", 200, "二百"),
    ("integer", 222, "二百二十二"),
    ("integer", 999, "九百九十九"),
    # 两 in the 千 place, 零 for inner zeros, nothing for trailing ones
    ("integer", 1000, "一千"),
    ("integer", 1001, "一千零一"),
    ("integer", 1010, "一千零一十"),
    ("integer", 1100, "一千一百"),
    ("integer", 2000, "两千"),
    ("integer", 2002, "两千零二"),
    ("integer", 2020, "两千零二十"),
    ("integer", 2200, "两千二百"),
    ("integer", 2222, "两千二百二十二"),
    ("integer", 1200, "一千二百"),
    ("integer", 9999, "九千九百九十九"),
    # 万 sections
    ("integer", 10000, "一万"),
    ("integer", 10001, "一万零一"),
    ("integer", 10010, "一万零一十"),
    ("integer", 10100, "一万零一百"),
    ("integer", 11000, "一万一千"),
    ("integer", 12000, "一万两千"),
    ("integer", 12345, "一万两千三百四十五"),
    ("integer", 20000, "两万"),
    ("integer", 22000, "两万两千"),
    ("integer", 100000, "十万"),
    ("integer", 100010, "十万零一十"),
    ("integer", 101000, "十万一千"),
    ("integer", 110000, "十一万"),
    ("integer", 120000, "十二万"),
    ("integer", 200000, "二十万"),
    ("integer", 1000000, "一百万"),
    ("integer", 2000000, "二百万"),
    ("integer", 10000000, "一千万"),
    ("integer", 10005000, "一千万五千"),  # a section's trailing zeros are silent
    ("integer", 1005000, "一百万五千"),
    ("integer", 10000500, "一千万零五百"),
    ("integer", 20000000, "两千万"),
    ("integer", 12345678, "一千二百三十四万五千六百七十八"),
    # 亿 and beyond
    ("integer", 100000000, "一亿"),
    ("integer", 100000001, "一亿零一"),
    ("integer", 100005000, "一亿零五千"),
    ("integer", 100100000, "一亿零一十万"),
    ("integer", 110000000, "一亿一千万"),
    ("integer", 120000000, "一亿两千万"),
    ("integer", 200000000, "两亿"),
    ("integer", 1000000000, "十亿"),
    ("integer", 1010000000, "十亿一千万"),
    ("integer", 10**12, "一万亿"),
    ("integer", 2 * 10**12, "两万亿"),
    ("integer", 10**16, "一亿亿"),
    ("integer", -5, "负五"),
    ("integer", -10, "负十"),
    ("integer", -2000, "负两千"),
    ("integer", "1,200", "一千二百"),
    # numbers: decimals read digit by digit with 一 (not 幺)
    ("number", 0, "零"),
    ("number", 3.14, "三点一四"),
    ("number", "0.5", "零点五"),
    ("number", ".5", "零点五"),
    ("number", "-0.5", "负零点五"),
    ("number", "2.50", "二点五"),
    ("number", "3.0", "三"),
    ("number", "-0.0", "零"),
    ("number", "10.01", "十点零一"),
    ("number", "110.1", "一百一十点一"),
    ("number", Decimal("2000.05"), "两千点零五"),
    ("number", "1,234.5", "一千二百三十四点五"),
    ("number", 15, "十五"),
    ("number", "0.5283", "零点五二八三"),
    # amounts: 元/角/分 with 整, 零 for a silent 0 before 角/分
    ("amount", "230.00", "二百三十元整"),
    ("amount", "12.05", "十二元零五分"),
    ("amount", "123.45", "一百二十三元四角五分"),
    ("amount", "0.50", "五角"),
    ("amount", "100.30", "一百元零三角"),
    ("amount", "100.05", "一百元零五分"),
    ("amount", "100.35", "一百元零三角五分"),
    ("amount", "12.30", "十二元三角"),
    ("amount", "12.34", "十二元三角四分"),
    ("amount", "0.05", "五分"),
    ("amount", "0.55", "五角五分"),
    ("amount", "0", "零元整"),
    ("amount", "0.00", "零元整"),
    ("amount", "1", "一元整"),
    ("amount", "2", "二元整"),
    ("amount", "10", "十元整"),
    ("amount", "2000", "两千元整"),
    ("amount", "10010.10", "一万零一十元零一角"),
    ("amount", "1,234.56", "一千二百三十四元五角六分"),
    ("amount", 123.45, "一百二十三元四角五分"),
    ("amount", 12.05, "十二元零五分"),
    ("amount", -35.2, "负三十五元二角"),
    ("amount", "-0.05", "负五分"),
    ("amount", "-0.00", "零元整"),
    ("amount", Decimal("99999.99"), "九万九千九百九十九元九角九分"),
    ("amount", 5, "五元整"),
    # balances: 余额 / 欠费
    ("balance", -35.2, "欠费三十五元二角"),
    ("balance", "35.20", "余额三十五元二角"),
    ("balance", 0, "余额零元整"),
    ("balance", "-1200", "欠费一千二百元整"),
    ("balance", "-0.08", "欠费八分"),
    # digits: 幺 for 1, grouped with "，"
    ("digits", "0", "零"),
    ("digits", "1", "幺"),
    ("digits", "95598", "九五五九八"),
    ("digits", "110", "幺幺零"),
    ("digits", "123456", "幺二三，四五六"),
    ("digits", "1234567", "幺二三，四五六七"),
    ("digits", "12345678", "幺二三四，五六七八"),
    ("digits", "3201234567", "三二零，幺二三，四五六七"),
    ("digits", "13812345678", "幺三八，幺二三四，五六七八"),
    ("digits", "000123", "零零零，幺二三"),
    ("digits", "1234 5678 9012", "幺二三四，五六七八，九零幺二"),
    ("digits", "0571-87654321", "零五七幺，八七六五，四三二幺"),
    ("digits", 4096, "四零九六"),
    # phones: mobile 3-4-4, area codes
    ("phone", "13812345678", "幺三八，幺二三四，五六七八"),
    ("phone", "+8613812345678", "八六，幺三八，幺二三四，五六七八"),
    ("phone", "+86 10 8888 6666", "八六，幺零，八八八八，六六六六"),
    ("phone", "95598", "九五五九八"),
    ("phone", "01088886666", "零幺零，八八八八，六六六六"),
    ("phone", "02112345678", "零二幺，幺二三四，五六七八"),
    ("phone", "057187654321", "零五七幺，八七六五，四三二幺"),
    ("phone", "07551234567", "零七五五，幺二三，四五六七"),
    ("phone", "87654321", "八七六五，四三二幺"),
    ("phone", "010-8888 6666", "零幺零，八八八八，六六六六"),
    # dates: 〇 in years, months and days as numbers
    ("date", "2026-11-23", "二〇二六年十一月二十三日"),
    ("date", "2000-01-01", "二〇〇〇年一月一日"),
    ("date", "2010-10-10", "二〇一〇年十月十日"),
    ("date", "1999-12-31", "一九九九年十二月三十一日"),
    ("date", "2026/2/2", "二〇二六年二月二日"),
    ("date", "2026.02.20", "二〇二六年二月二十日"),
    ("date", dt.date(2024, 2, 29), "二〇二四年二月二十九日"),
    ("date", dt.datetime(2026, 5, 1, 8, 30), "二〇二六年五月一日"),
    # times: 点/分, 整 on the hour, 两点
    ("time", "14:05", "十四点零五分"),
    ("time", "14:00", "十四点整"),
    ("time", "0:00", "零点整"),
    ("time", "02:00", "两点整"),
    ("time", "2:30", "两点三十分"),
    ("time", "12:10", "十二点十分"),
    ("time", "22:22", "二十二点二十二分"),
    ("time", "09:01", "九点零一分"),
    ("time", "23:59:09", "二十三点五十九分零九秒"),
    ("time", "08:00:30", "八点零分三十秒"),
    ("time", dt.time(10, 15), "十点十五分"),
    # percentages
    ("percent", 95.5, "百分之九十五点五"),
    ("percent", 100, "百分之一百"),
    ("percent", "0.5", "百分之零点五"),
    ("percent", "12%", "百分之十二"),
    ("percent", -3, "负百分之三"),
    ("percent", 0, "百分之零"),
    ("percent", "99.99", "百分之九十九点九九"),
    # text passes through
    ("text", "您好", "您好"),
    ("text", "王先生", "王先生"),
]


def test_table_is_big_enough_and_covers_every_kind() -> None:
    assert len(CASES) >= 100
    assert {kind for kind, _, _ in CASES} == SLOT_KINDS


@pytest.mark.parametrize(("kind", "value", "spoken"), CASES)
def test_read_out(kind: str, value: object, spoken: str) -> None:
    assert say(kind, value) == spoken


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("amount", "12.3.4", "amount: '12.3.4' is not a number"),
        ("amount", "12.345", "amount: '12.345' has more than two decimal places (分)"),
        ("amount", "abc", "amount: 'abc' is not a number"),
        ("amount", "", "amount: '' is not a number"),
        ("amount", float("nan"), "amount: nan is not a finite number"),
        ("balance", None, "balance: None is not a number"),
        ("number", "1,23", "number: '1,23' is not a number"),
        ("number", "5.", "number: '5.' is not a number"),
        ("integer", "1.5", "integer: '1.5' is not an integer"),
        ("integer", True, "integer: True is not an integer"),
        ("digits", "12a4", "digits: '12a4' is not a digit string (only 0-9, spaces and '-')"),
        ("digits", -5, "digits: -5 is negative"),
        ("phone", "", "phone: '' is not a digit string (only 0-9, spaces and '-')"),
        ("date", "2026-02-30", "date: '2026-02-30' is not a valid date (day is out of range"),
        ("date", "23/11/2026", "date: '23/11/2026' is not a date (expected YYYY-MM-DD)"),
        ("time", "24:00", "time: '24:00' is not a valid time of day"),
        ("time", "7pm", "time: '7pm' is not a time (expected HH:MM or HH:MM:SS)"),
        ("percent", "x%", "percent: 'x' is not a number"),
    ],
)
def test_malformed_values_are_rejected_with_a_clear_message(
    kind: str, value: object, message: str
) -> None:
    with pytest.raises(ReadoutError) as caught:
        say(kind, value)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ReadoutError, match="'money' is not a read-out kind.*amount, balance"):
        say("money", 1)


# --- an independent parser: Chinese numerals back to numbers -------------------------------

_DIGIT_VALUE = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4,
                "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}  # fmt: skip
_SMALL_UNIT = {"十": 10, "百": 100, "千": 1000}


def parse_below_wan(text: str) -> int:
    """十, 一百零五, 两千二百… → int; every digit must be followed by a unit or end the text."""
    total, digit = 0, None
    for char in text:
        if char in _DIGIT_VALUE:
            assert digit is None or _DIGIT_VALUE[char] == 0 or digit == 0, text
            digit = _DIGIT_VALUE[char]
        else:
            unit = _SMALL_UNIT[char]
            total += (1 if digit is None else digit) * unit
            digit = None
    return total + (digit or 0)


def parse_integer(text: str) -> int:
    """The inverse of integer(): 亿 and 万 split the text, recursively for 万亿 / 亿亿."""
    if text.startswith("负"):
        return -parse_integer(text[1:])
    if "亿" in text:
        head, _, tail = text.rpartition("亿")
        return parse_integer(head) * 10**8 + (parse_integer(tail) if tail else 0)
    if "万" in text:
        head, _, tail = text.rpartition("万")
        return parse_integer(head) * 10**4 + (parse_integer(tail) if tail else 0)
    return parse_below_wan(text)


def parse_amount_fen(text: str) -> int:
    sign = -1 if text.startswith("负") else 1
    text = text.removeprefix("负").removesuffix("整")
    fen = 0
    match = re.fullmatch(r"(?:(.+)元)?零?(?:(.)角)?零?(?:(.)分)?", text)
    assert match, text
    yuan, jiao, cents = match.groups()
    if yuan:
        fen += parse_integer(yuan) * 100
    if jiao:
        fen += _DIGIT_VALUE[jiao] * 10
    if cents:
        fen += _DIGIT_VALUE[cents]
    return sign * fen


big_integers = st.integers(min_value=-(10**20), max_value=10**20)
small_integers = st.integers(min_value=0, max_value=10**9)


@given(big_integers)
def test_integer_reads_back_to_the_same_number(n: int) -> None:
    assert parse_integer(readout.integer(n)) == n


@given(st.one_of(small_integers, big_integers))
def test_integer_has_no_double_zero_no_trailing_zero_and_only_read_out_characters(n: int) -> None:
    spoken = readout.integer(n)
    assert "零零" not in spoken
    assert n == 0 or not spoken.endswith("零")
    assert not spoken.startswith("一十")
    assert set(spoken) <= UNIT_ALPHABET
    assert not re.search(r"\d", spoken)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_amount_reads_back_to_the_same_fen_and_never_has_arabic_numerals(fen: int) -> None:
    value = Decimal(fen).scaleb(-2)
    spoken = readout.amount(value)
    assert parse_amount_fen(spoken) == fen
    assert not re.search(r"\d", spoken)
    assert "零零" not in spoken and not spoken.endswith("零")
    assert set(spoken) <= UNIT_ALPHABET


@given(st.integers(min_value=-(10**9), max_value=10**9))
def test_balance_says_arrears_for_negative_and_balance_otherwise(fen: int) -> None:
    spoken = readout.balance(Decimal(fen).scaleb(-2))
    assert spoken.startswith("欠费" if fen < 0 else "余额")
    assert spoken[2:] == readout.amount(Decimal(abs(fen)).scaleb(-2))


@given(st.text(alphabet="0123456789", min_size=1, max_size=30))
def test_digits_read_every_digit_once_in_order(value: str) -> None:
    spoken = readout.digits(value)
    syllables = spoken.replace("，", "")
    assert len(syllables) == len(value)
    assert "".join(str(_DIGIT_VALUE[c]) for c in syllables) == value
    assert "一" not in spoken
    groups = spoken.split("，")
    assert all(3 <= len(g) <= 4 for g in groups) or len(groups) == 1


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_mobile_numbers_are_grouped_3_4_4(value: str) -> None:
    assert [len(g) for g in readout.phone(value).split("，")] == [3, 4, 4]


@given(
    st.integers(min_value=-(10**8), max_value=10**8),
    st.text(alphabet="0123456789", max_size=6),
)
def test_number_reads_integer_part_then_decimals_one_by_one(whole: int, decimals: str) -> None:
    value = f"{whole}.{decimals}" if decimals else str(whole)
    spoken = readout.number(value)
    head, _, tail = spoken.removeprefix("负").partition("点")
    assert parse_integer(head) == abs(whole)
    assert tail == "".join("零一二三四五六七八九"[int(c)] for c in decimals.rstrip("0"))
    assert not tail.endswith("零")


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2999, 12, 31)))
def test_dates_read_back(day: dt.date) -> None:
    match = re.fullmatch(r"(.{4})年(.+)月(.+)日", readout.date(day.isoformat()))
    assert match
    year = int("".join(str(_DIGIT_VALUE[c]) for c in match[1]))
    assert (year, parse_integer(match[2]), parse_integer(match[3])) == (
        day.year,
        day.month,
        day.day,
    )
    assert "零" not in match[1]


@given(st.times())
@settings(max_examples=50)
def test_times_read_back(moment: dt.time) -> None:
    spoken = readout.time(moment.replace(microsecond=0))
    match = re.fullmatch(r"(.+)点(?:整|零?(.+)分(?:零?(.+)秒)?)", spoken)
    assert match, spoken
    assert parse_integer(match[1]) == moment.hour
    assert parse_integer(match[2] or "零") == moment.minute
    assert parse_integer(match[3] or "零") == moment.second


@given(st.sampled_from(sorted(SLOT_KINDS - {"text"})), st.data())
@settings(max_examples=50)
def test_say_dispatches_to_the_named_rule(kind: str, data: st.DataObject) -> None:
    values = {
        "amount": st.decimals(min_value=-999, max_value=999, places=2),
        "balance": st.decimals(min_value=-999, max_value=999, places=2),
        "number": st.decimals(min_value=-999, max_value=999, places=3),
        "integer": st.integers(-9999, 9999),
        "digits": st.from_regex(r"[0-9]{1,12}", fullmatch=True),
        "phone": st.from_regex(r"[0-9]{3,12}", fullmatch=True),
        "date": st.dates(),
        "time": st.times(),
        "percent": st.decimals(min_value=0, max_value=100, places=1),
    }
    value = data.draw(values[kind])
    assert say(kind, value) == getattr(readout, kind)(value)


def test_aware_moments_are_read_in_china_time() -> None:
    moment = dt.datetime(2026, 11, 23, 18, 59, tzinfo=dt.UTC)  # 02:59 next day in Beijing
    assert readout.say("date", moment) == "二〇二六年十一月二十四日"
    assert readout.say("time", moment) == "两点五十九分"
    assert readout.say("time", moment.replace(tzinfo=None)) == "十八点五十九分"
