"""Deterministic demo data for an empty store: a fictional prefecture-level city's customers.

:func:`ensure_demo_data` fills an empty database once (it returns False and changes nothing
when accounts already exist). The city 望川市 has urban districts, rural counties and remote
areas (:data:`AREAS`); customers get Chinese names, addresses of their area, 11-digit mobile
numbers and one (sometimes two) 10-digit electricity accounts with 12 monthly bills ending at
the current month (tiered residential tariff, seasonal consumption; most customers pay on
time, some keep a credit, some are in arrears). Bills fall due on the 25th of their month.

Fixed records the test scenarios rely on, always present whatever ``seed``/``customers``:

============  ======  ===========  ========  ======  =======  ========================
account       name    phone        area      charge  balance  notes
============  ======  ===========  ========  ======  =======  ========================
1234567890    张伟    13912345678  城东区    123.45  0.00     paid; due the 25th of the
                                   (urban)                     current month
2345678901    李娜    13823456789  城南区    88.00   -35.20   in arrears: 35.20 owed
3456789012    王芳    13734567890  城西区    156.30  0.00     area has the current
                                                               unplanned outage
1111111111    刘洋    13611111111  青山县    230.00  12.05    in credit
                                   (rural)
============  ======  ===========  ========  ======  =======  ========================

Outages: one current unplanned outage in 城西区 (reason 线路故障, began 40 minutes before
``now``, no ``end`` until someone records the restoration, an estimated restoration four hours
after it began, stated in the notice), and one planned outage in 柳河县 three days after
``now`` (08:00–18:00 China time, reason 线路检修).

Everything derives from ``seed`` and ``now`` (default: the clock), so tests pin ``now``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import structlog
from sqlalchemy import insert, select

from hotline.store.db import Database
from hotline.store.models import (
    LOCAL_TZ,
    Account,
    Area,
    AreaKind,
    Bill,
    Customer,
    Outage,
    local_date,
    utc_now,
)

log = structlog.get_logger(__name__)

CITY = "望川市"

AREAS: tuple[tuple[str, str, AreaKind], ...] = (
    ("990102", "城东区", AreaKind.URBAN),
    ("990103", "城西区", AreaKind.URBAN),
    ("990104", "城南区", AreaKind.URBAN),
    ("990105", "城北区", AreaKind.URBAN),
    ("990121", "青山县", AreaKind.RURAL),
    ("990122", "柳河县", AreaKind.RURAL),
    ("990123", "石桥县", AreaKind.RURAL),
    ("990131", "云岭县", AreaKind.REMOTE),
    ("990132", "北山林区", AreaKind.REMOTE),
)
_AREA_WEIGHTS = {AreaKind.URBAN: 15, AreaKind.RURAL: 10, AreaKind.REMOTE: 5}  # per area

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚"
)
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华霞平刚桂兰玉辉建国红林斌鹏飞燕婷宇浩凯文云海波"
    "鑫雪琳晨欣佳子梓涵轩博俊志春德荣梅庆福顺祥玲莉萍"
)
_STREETS = (
    "解放路",
    "人民路",
    "建设路",
    "中山路",
    "新华街",
    "文化路",
    "朝阳路",
    "光明街",
    "幸福路",
    "和平路",
    "滨江路",
    "学府路",
    "望川大道",
    "迎宾路",
)
_ESTATES = (
    "锦绣花园",
    "阳光家园",
    "金色港湾",
    "翠湖苑",
    "和谐家园",
    "书香门第",
    "春江花园",
    "碧水湾",
    "电力小区",
    "丽景苑",
)
_TOWNS = ("城关镇", "石门镇", "花桥乡", "龙泉镇", "新安镇", "白石乡", "桥头镇", "高坪乡")
_VILLAGES = ("李家村", "王庄村", "大坪村", "河西村", "杨柳村", "东岗村", "桃花村", "石塘村")
_MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "157",
    "158",
    "159",
    "177",
    "180",
    "181",
    "186",
    "187",
    "188",
    "189",
    "199",
)
_METER_TYPES = ("single_phase_smart", "three_phase_smart", "single_phase_prepaid")
_METER_TYPE_WEIGHTS = (85, 10, 5)

# Residential tiered tariff (阶梯电价), yuan/kWh, by monthly consumption.
TARIFF_TIERS: tuple[tuple[float, Decimal], ...] = (
    (180, Decimal("0.5283")),
    (350, Decimal("0.5783")),
    (math.inf, Decimal("0.8283")),
)
_SEASON = (1.15, 1.05, 0.9, 0.8, 0.85, 1.1, 1.45, 1.55, 1.15, 0.85, 0.9, 1.1)  # Jan…Dec
BILL_DUE_DAY = 25
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class FixedAccount:
    account_no: str
    name: str
    phone: str
    area: str
    address: str
    kwh: int
    charge: Decimal
    balance: Decimal


FIXED_ACCOUNTS: tuple[FixedAccount, ...] = (
    FixedAccount(
        "1234567890",
        "张伟",
        "13912345678",
        "城东区",
        f"{CITY}城东区解放路128号锦绣花园3栋2单元501室",
        229,
        Decimal("123.45"),
        Decimal("0.00"),
    ),
    FixedAccount(
        "2345678901",
        "李娜",
        "13823456789",
        "城南区",
        f"{CITY}城南区建设路56号阳光家园1栋1单元302室",
        167,
        Decimal("88.00"),
        Decimal("-35.20"),
    ),
    FixedAccount(
        "3456789012",
        "王芳",
        "13734567890",
        "城西区",
        f"{CITY}城西区滨江路9号翠湖苑6栋3单元1102室",
        286,
        Decimal("156.30"),
        Decimal("0.00"),
    ),
    FixedAccount(
        "1111111111",
        "刘洋",
        "13611111111",
        "青山县",
        f"{CITY}青山县石门镇李家村3组15号",
        394,
        Decimal("230.00"),
        Decimal("12.05"),
    ),
)
CURRENT_OUTAGE_AREA = "城西区"
PLANNED_OUTAGE_AREA = "柳河县"


def tiered_charge(kwh: int) -> Decimal:
    """The month's charge for ``kwh`` under :data:`TARIFF_TIERS`."""
    charge, lower = Decimal(0), 0.0
    for upper, price in TARIFF_TIERS:
        if kwh > lower:
            charge += Decimal(min(kwh, upper) - lower) * price
        lower = upper
    return charge.quantize(CENT, ROUND_HALF_UP)


def bill_periods(today: date, months: int = 12) -> list[date]:
    """First days of the ``months`` months ending with ``today``'s month, oldest first."""
    first = today.replace(day=1)
    periods = []
    for back in range(months - 1, -1, -1):
        index = first.year * 12 + first.month - 1 - back
        periods.append(date(index // 12, index % 12 + 1, 1))
    return periods


async def ensure_demo_data(
    db: Database, *, seed: int = 95598, customers: int = 2000, now: datetime | None = None
) -> bool:
    """Fill an empty store with the demo city; False (and no change) if accounts exist.

    ``customers`` counts every customer, the fixed ones included.
    """
    now = now or utc_now()
    async with db.session() as session:
        if await session.scalar(select(Account.id).limit(1)) is not None:
            return False
        generator = _Generator(random.Random(seed), now)
        customer_rows, account_rows = generator.people(max(customers, len(FIXED_ACCOUNTS)))

        await session.execute(
            insert(Area), [{"code": c, "name": n, "kind": k.value} for c, n, k in AREAS]
        )
        # Plain executemany, then ids by unique key (demo phones are unique): RETURNING with
        # guaranteed order would fall back to one statement per row.
        await session.execute(insert(Customer), customer_rows)
        customer_ids = {
            phone: id_ for phone, id_ in await session.execute(select(Customer.phone, Customer.id))
        }
        for row in account_rows:
            row["customer_id"] = customer_ids[customer_rows[row.pop("customer_index")]["phone"]]
        await session.execute(
            insert(Account),
            [{k: v for k, v in row.items() if k != "profile"} for row in account_rows],
        )
        account_ids = {
            no: id_ for no, id_ in await session.execute(select(Account.account_no, Account.id))
        }
        bill_rows = [
            {"account_id": account_ids[row["account_no"]], **bill}
            for row in account_rows
            for bill in generator.bills(row)
        ]
        await session.execute(insert(Bill), bill_rows)
        await session.execute(insert(Outage), generator.outages())
        await session.commit()
    log.info(
        "demo.created",
        customers=len(customer_rows),
        accounts=len(account_rows),
        bills=len(bill_rows),
        seed=seed,
        today=local_date(now).isoformat(),
    )
    return True


class _Generator:
    """Draws the demo city from one seeded random stream, in a fixed order."""

    def __init__(self, rng: random.Random, now: datetime) -> None:
        self.rng = rng
        self.now = now
        self.today = local_date(now)
        self.periods = bill_periods(self.today)
        self._phones = {f.phone for f in FIXED_ACCOUNTS}
        self._account_nos = {f.account_no for f in FIXED_ACCOUNTS}

    # -- customers and accounts -------------------------------------------------------------

    def people(self, total: int) -> tuple[list[dict], list[dict]]:
        customers: list[dict] = []
        accounts: list[dict] = []
        for fixed in FIXED_ACCOUNTS:
            customers.append(self._customer(fixed.name, fixed.phone, fixed.address, fixed.area))
            accounts.append(
                self._account(
                    len(customers) - 1,
                    fixed.account_no,
                    fixed.address,
                    fixed.area,
                    "single_phase_smart",
                    profile=fixed,
                )
            )
        areas = [name for _code, name, _kind in AREAS]
        weights = [_AREA_WEIGHTS[kind] for _code, _name, kind in AREAS]
        for _ in range(total - len(FIXED_ACCOUNTS)):
            area = self.rng.choices(areas, weights)[0]
            kind = next(k for _c, n, k in AREAS if n == area)
            address = self._address(area, kind)
            customers.append(self._customer(self._name(), self._phone(), address, area))
            index = len(customers) - 1
            for extra in range(2 if self.rng.random() < 0.05 else 1):
                meter = self.rng.choices(_METER_TYPES, _METER_TYPE_WEIGHTS)[0]
                where = address if extra == 0 else self._address(area, kind)
                profile = self.rng.choices(("prompt", "credit", "arrears"), (80, 8, 12))[0]
                accounts.append(
                    self._account(index, self._account_no(), where, area, meter, profile=profile)
                )
        return customers, accounts

    def _customer(self, name: str, phone: str, address: str, area: str) -> dict:
        return {
            "name": name,
            "phone": phone,
            "address": address,
            "area": area,
            "vip": self.rng.random() < 0.02,
            "created_at": self.now,
        }

    def _account(
        self,
        customer_index: int,
        account_no: str,
        address: str,
        area: str,
        meter_type: str,
        *,
        profile: object,
    ) -> dict:
        return {
            "customer_index": customer_index,
            "account_no": account_no,
            "address": address,
            "area": area,
            "meter_type": meter_type,
            "created_at": self.now,
            "profile": profile,
        }

    def _name(self) -> str:
        given_length = 1 if self.rng.random() < 0.3 else 2
        return self.rng.choice(_SURNAMES) + "".join(
            self.rng.choice(_GIVEN) for _ in range(given_length)
        )

    def _phone(self) -> str:
        while True:
            phone = self.rng.choice(_MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"
            if phone not in self._phones:
                self._phones.add(phone)
                return phone

    def _account_no(self) -> str:
        while True:
            account_no = f"{self.rng.randrange(10**9, 10**10)}"
            if account_no not in self._account_nos:
                self._account_nos.add(account_no)
                return account_no

    def _address(self, area: str, kind: AreaKind) -> str:
        r = self.rng
        if kind is AreaKind.URBAN:
            street = f"{r.choice(_STREETS)}{r.randint(1, 300)}号{r.choice(_ESTATES)}"
            building = f"{r.randint(1, 20)}栋{r.randint(1, 4)}单元"
            flat = f"{building}{r.randint(1, 18)}{r.randint(1, 4):02d}室"
            return f"{CITY}{area}{street}{flat}"
        return (
            f"{CITY}{area}{r.choice(_TOWNS)}{r.choice(_VILLAGES)}"
            f"{r.randint(1, 12)}组{r.randint(1, 80)}号"
        )

    # -- bills ------------------------------------------------------------------------------

    def bills(self, account: dict) -> Iterator[dict]:
        profile = account["profile"]
        fixed = profile if isinstance(profile, FixedAccount) else None
        base = (
            self.rng.uniform(500, 1500)
            if account["meter_type"] == "three_phase_smart"
            else self.rng.uniform(90, 260)
        )
        unpaid_months = self.rng.randint(1, 2) if profile == "arrears" else 0
        balance = Decimal("0.00")
        for number, period in enumerate(self.periods):
            months_left = len(self.periods) - number
            kwh = max(0, round(base * _SEASON[period.month - 1] * self.rng.uniform(0.85, 1.15)))
            charge = tiered_charge(kwh)
            if fixed is not None and months_left == 1:
                kwh, charge = fixed.kwh, fixed.charge
                paid = fixed.balance - balance + charge
            elif profile == "credit":
                owed = charge - balance
                paid = Decimal(math.ceil(owed / 50) * 50) if owed > 0 else Decimal(0)
            elif months_left <= unpaid_months:
                paid = Decimal(0) if self.rng.random() < 0.7 else (charge / 2).quantize(CENT)
            else:
                paid = max(charge - balance, Decimal(0))
            balance += paid - charge
            yield {
                "period": f"{period:%Y-%m}",
                "kwh": Decimal(kwh),
                "charge": charge,
                "paid": paid.quantize(CENT),
                "balance": balance.quantize(CENT),
                "due_date": period.replace(day=BILL_DUE_DAY),
            }

    # -- outages ----------------------------------------------------------------------------

    def outages(self) -> list[dict]:
        start = (self.now - timedelta(minutes=40)).replace(second=0, microsecond=0)
        expected_end = start + timedelta(hours=4)
        planned_day = self.today + timedelta(days=3)
        planned_start = datetime.combine(planned_day, time(8, 0), LOCAL_TZ)
        planned_end = datetime.combine(planned_day, time(18, 0), LOCAL_TZ)
        return [
            {
                "number": f"TD{local_date(start):%Y%m%d}000001",
                "area": CURRENT_OUTAGE_AREA,
                "start": start,
                "end": None,
                "expected_end": expected_end,
                "reason": "线路故障",
                "planned": False,
                "notice": (
                    f"尊敬的客户，因线路故障，{CURRENT_OUTAGE_AREA}部分区域自"
                    f"{_spoken_time(start)}起停电，抢修人员正在全力抢修，预计"
                    f"{_spoken_time(expected_end)}恢复供电。给您带来不便，敬请谅解。"
                ),
                "created_at": self.now,
            },
            {
                "number": f"TD{self.today:%Y%m%d}000002",
                "area": PLANNED_OUTAGE_AREA,
                "start": planned_start,
                "end": planned_end,
                "expected_end": planned_end,
                "reason": "线路检修",
                "planned": True,
                "notice": (
                    f"尊敬的客户，因线路检修，{PLANNED_OUTAGE_AREA}城关镇、龙泉镇将于"
                    f"{_spoken_time(planned_start)}至{planned_end.astimezone(LOCAL_TZ):%H:%M}"
                    "停电，请提前做好准备。给您带来不便，敬请谅解。"
                ),
                "created_at": self.now,
            },
        ]


def _spoken_time(moment: datetime) -> str:
    local = moment.astimezone(LOCAL_TZ)
    return f"{local.month}月{local.day}日{local:%H:%M}"
