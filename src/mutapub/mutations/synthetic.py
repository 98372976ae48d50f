"""Deterministic, vectorised generator of synthetic national-register-like person snapshot pairs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mutapub.mutations import csvwrite

__all__ = ["COLUMNS", "insz_check_digits", "persons_pair", "write_persons_pair"]

COLUMNS: tuple[str, ...] = (
    "insz",
    "last_name",
    "first_names",
    "birth_date",
    "sex",
    "nationality",
    "municipality_nis",
    "street",
    "house_number",
    "box",
    "postal_code",
    "civil_status",
    "death_date",
)

# --------------------------------------------------------------------------------------------------
# Reference data (all small; rows hold integer codes into these lists until they are materialised).
# --------------------------------------------------------------------------------------------------


def _day(year: int, month: int, day: int) -> int:
    return (dt.date(year, month, day) - dt.date(1970, 1, 1)).days


_BIRTH_LO = _day(1925, 1, 1)
_BIRTH_HI = _day(2024, 12, 31)
_Y2000 = _day(2000, 1, 1)
_DAY1 = _day(2025, 9, 30)  # "as of" date of the day-1 snapshot
_NEWBORN_LO = _day(2025, 1, 1)  # births registered between the snapshots (late registrations included)
_NEWBORN_HI = _day(2025, 9, 30)
_DEATH2_LO = _day(2025, 9, 25)  # deaths registered in day 2 (reported with a few days' delay)
_DEATH2_HI = _day(2025, 10, 1)
_DEATH1_LO = _day(2010, 1, 1)  # deaths already on record in day 1
_NO_DATE = np.iinfo(np.int32).min

# nis, postal code, language ("nl", "fr" or "bi"), weight (roughly the population)
_MUNICIPALITIES: tuple[tuple[str, str, str, int], ...] = (
    ("11002", "2000", "nl", 530),  # Antwerpen
    ("44021", "9000", "nl", 265),  # Gent
    ("52011", "6000", "fr", 202),  # Charleroi
    ("62063", "4000", "fr", 197),  # Liège
    ("21004", "1000", "bi", 196),  # Brussel / Bruxelles
    ("31005", "8000", "nl", 119),  # Brugge
    ("92094", "5000", "fr", 113),  # Namur
    ("24062", "3000", "nl", 102),  # Leuven
    ("53053", "7000", "fr", 96),  # Mons
    ("41002", "9300", "nl", 89),  # Aalst
    ("12025", "2800", "nl", 88),  # Mechelen
    ("71022", "3500", "nl", 80),  # Hasselt
    ("34022", "8500", "nl", 78),  # Kortrijk
)

# fmt: off
_STREETS_NL: tuple[str, ...] = (
    "Kerkstraat", "Stationsstraat", "Sint-Jansplein", "Dorpsstraat", "Molenstraat", "Nieuwstraat",
    "Schoolstraat", "Kapelstraat", "Beekstraat", "Lindenlaan", "Koning Albertlaan", "Veldstraat",
    "Onze-Lieve-Vrouwstraat", "Sint-Pietersnieuwstraat", "Overpoortstraat", "Brusselsesteenweg",
    "Kouter", "Grote Markt", "Meir", "Diestsestraat", "Naamsestraat", "Tiensestraat", "Ijzerenweg",
    "Sint-Michielsstraat", "'s Herenstraat", "Burgemeester Van Gansberghelaan", "Zuidlaan",
    "Begijnhofdreef", "Heilig-Hartplein", "Coupure Links", "Vlaamsekaai", "De Keyserlei",
)
_STREETS_FR: tuple[str, ...] = (
    "Rue de l'Église", "Rue de la Gare", "Place Saint-Lambert", "Avenue Louise", "Chaussée d'Ixelles",
    "Rue du Château", "Boulevard d'Avroy", "Rue Haute", "Rue des Écoles", "Rue Général Leman",
    "Quai de l'Ourthe", "Rue Émile Vandervelde", "Rue Neuve", "Place du Marché", "Rue de Fer",
    "Avenue de la Toison d'Or", "Rue Saint-Gilles", "Chaussée de Charleroi", "Rue des Carmes",
    "Place Verte", "Rue de Bruxelles", "Rue Notre-Dame", "Rue du Onze Novembre", "Rue Léopold",
)
# Values exercising CSV quoting: the delimiter, a double quote, a line break.
_STREETS_SPECIAL: tuple[str, ...] = (
    "Kerkstraat; achterbouw",
    'Residentie "Ter Linde"',
    "Hoogstraat\nachterbouw",
)
_SPECIAL_STREET_RATES: tuple[float, ...] = (1e-4, 5e-5, 2e-5)

_LAST_NAMES: tuple[str, ...] = (
    "Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens", "Wouters",
    "De Smet", "Dubois", "Lambert", "Dupont", "Martin", "Van Damme", "D'Hondt", "Vermeulen", "Pauwels",
    "Hermans", "Aerts", "Michiels", "Lemaître", "Desmet", "Van den Broeck", "Vandenberghe", "De Backer",
    "Leroy", "Denis", "Renard", "Lejeune", "Simon", "Laurent", "Noël", "Gérard", "François", "Thiry",
    "El Amrani", "Benali", "El Idrissi", "Ölçer", "Yılmaz", "Çelik", "Nguyễn", "Trần", "Kowalski",
    "Müller", "Schäfer", "Rossi", "Esposito", "García", "Fernández", "Sánchez", "O'Brien",
    "Van de Velde", "D'Haese", "De Coninck", "Ngoy", "Mbuyi", "Kabongo", "Sørensen", "Ďurica",
)
_LAST_NAMES_SPECIAL: tuple[str, ...] = ("NA", "NULL")  # real family names that look like missing-value tokens
_SPECIAL_LAST_NAME_RATE = 2e-5

_FIRST_M: tuple[str, ...] = (
    "Jan", "Pieter", "Luc", "Noah", "Arthur", "Mohamed", "Jules", "Louis", "Liam", "Lucas", "Adam",
    "Victor", "Mathéo", "André", "Jérôme", "Emre", "Thiên", "Marc", "Dirk", "Wim", "Jean-Pierre",
    "François", "Maximilien", "Rayan", "Senne", "Wout", "Jef", "Noël", "Çağan", "Björn",
)
_FIRST_F: tuple[str, ...] = (
    "Zoë", "Emma", "Olivia", "Marie", "Louise", "Lina", "Noor", "Anaïs", "Hélène", "Ayşe", "Fatma",
    "Chloé", "Elise", "Mila", "Léa", "Ines", "Anne-Marie", "Maria", "Rita", "Godelieve", "Yasmine",
    "Saskia", "Françoise", "Mélanie", "Céline", "Ilse", "Nour", "Amélie", "Đào", "Ingrid",
)
# fmt: on

_NATIONALITIES: tuple[str, ...] = ("150", "111", "129", "235", "128", "173")
_NATIONALITY_P = np.array([0.87, 0.03, 0.03, 0.03, 0.025, 0.015])
_NEWBORN_NATIONALITY_P = np.array([0.95, 0.01, 0.01, 0.015, 0.01, 0.005])

_CIVIL: tuple[str, ...] = ("single", "married", "legal cohabitation", "divorced", "widowed")
# Cumulative probabilities of the civil statuses above, by age bucket (<18, 18-29, 30-64, 65+).
_CIVIL_CUM = np.cumsum(
    np.array(
        [
            [1.00, 0.00, 0.00, 0.00, 0.00],
            [0.70, 0.10, 0.17, 0.03, 0.00],
            [0.25, 0.45, 0.12, 0.16, 0.02],
            [0.08, 0.50, 0.04, 0.12, 0.26],
        ]
    ),
    axis=1,
)
_CIVIL_AGE_EDGES = np.array([18, 30, 65])
# Two possible next statuses for each current status (a civil-status mutation).
_CIVIL_NEXT = np.array([[1, 2], [3, 4], [1, 0], [1, 2], [1, 2]], dtype=np.int8)

_HOUSE_MAX = 300
_HOUSE_NUMBERS: tuple[str, ...] = tuple(
    f"{n}{suffix}" for suffix in ("", "A", "B") for n in range(1, _HOUSE_MAX + 1)
)
_BOXES: tuple[str | None, ...] = (None, *(f"b{i}" for i in range(1, 41)))

# Day-2 mutations: share of the updates, and deletions / insertions relative to the day-1 rows.
_MOVE_SHARE, _CIVIL_SHARE = 0.60, 0.25  # the rest are deaths
_DELETE_RATE = 0.001  # emigration
_INSERT_RATE = 0.0015  # births

_SERIALS = 998  # 001-997 odd for men, 002-998 even for women


@dataclass
class _Persons:
    """Persons as integer codes into the reference lists (compact; strings are built per chunk)."""

    birth_day: np.ndarray  # int32, days since 1970-01-01
    serial: np.ndarray  # int16, 1..998, odd = M
    last: np.ndarray  # int16
    fn1: np.ndarray  # int16
    fn2: np.ndarray  # int16, -1 = absent
    fn3: np.ndarray  # int16, -1 = absent
    nat: np.ndarray  # int8
    muni: np.ndarray  # int8
    street: np.ndarray  # int16
    house: np.ndarray  # int16
    box: np.ndarray  # int8, 0 = null
    civil: np.ndarray  # int8
    death_day: np.ndarray  # int32, _NO_DATE = alive

    def __len__(self) -> int:
        return len(self.birth_day)

    def take(self, idx: np.ndarray) -> _Persons:
        return _Persons(**{k: v[idx] for k, v in vars(self).items()})

    def slice(self, start: int, stop: int) -> _Persons:
        return _Persons(**{k: v[start:stop] for k, v in vars(self).items()})

    @staticmethod
    def concat(a: _Persons, b: _Persons) -> _Persons:
        return _Persons(**{k: np.concatenate([v, getattr(b, k)]) for k, v in vars(a).items()})


class _Dicts:
    """The reference lists as Arrow string arrays, plus the index ranges used for sampling.

    With csv=True the values are CSV-encoded (quoted where needed, null as an empty string).
    """

    def __init__(self, csv: bool = False) -> None:
        self.csv = csv
        self.muni_lang = np.array([{"nl": 0, "fr": 1, "bi": 2}[m[2]] for m in _MUNICIPALITIES], dtype=np.int8)
        w = np.array([m[3] for m in _MUNICIPALITIES], dtype=float)
        self.muni_p = w / w.sum()
        self.nis = pa.array([m[0] for m in _MUNICIPALITIES], pa.string())
        self.postal = pa.array([m[1] for m in _MUNICIPALITIES], pa.string())
        self.street = pa.array(_STREETS_NL + _STREETS_FR + _STREETS_SPECIAL, pa.string())
        self.street_off = np.array([0, len(_STREETS_NL)])
        self.street_len = np.array([len(_STREETS_NL), len(_STREETS_FR)])
        self.street_special0 = len(_STREETS_NL) + len(_STREETS_FR)
        self.last = pa.array(_LAST_NAMES + _LAST_NAMES_SPECIAL, pa.string())
        zipf = 1.0 / np.arange(1, len(_LAST_NAMES) + 1) ** 0.8
        self.last_p = zipf / zipf.sum()
        self.first = pa.array(_FIRST_M + _FIRST_F, pa.string())
        self.first_off = np.array([len(_FIRST_M), 0])  # index by is_male: [female, male]
        self.first_len = np.array([len(_FIRST_F), len(_FIRST_M)])
        self.nat = pa.array(_NATIONALITIES, pa.string())
        self.civil = pa.array(_CIVIL, pa.string())
        self.house = pa.array(_HOUSE_NUMBERS, pa.string())
        self.box = pa.array(_BOXES, pa.string())
        self.sex = pa.array(["F", "M"], pa.string())
        self.dates = _DATE_TEXT
        if csv:
            for name, values in vars(self).items():
                if isinstance(values, pa.Array):
                    setattr(self, name, _csv_field(values))


# --------------------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------------------


def insz_check_digits(base9: np.ndarray, born_2000_or_later: np.ndarray) -> np.ndarray:
    """Belgian national-number check digits (1..97) for YYMMDDSSS bases.

    Uses 97 - (base9 mod 97), or 97 - ((2_000_000_000 + base9) mod 97) for people born in 2000 or later.
    """
    b = np.asarray(base9, dtype=np.int64)
    return np.where(np.asarray(born_2000_or_later, dtype=bool), 97 - (b + 2_000_000_000) % 97, 97 - b % 97)


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    y = d.astype("datetime64[Y]")
    m = d.astype("datetime64[M]")
    return (
        y.astype(np.int64) + 1970,
        (m - y).astype(np.int64) + 1,
        (d - m).astype(np.int64) + 1,
    )


def _yymmdd_table(lo: int, hi: int) -> np.ndarray:
    year, month, dom = _ymd(np.arange(lo, hi + 1))
    return (year % 100) * 10_000 + month * 100 + dom


_YYMMDD = _yymmdd_table(_BIRTH_LO, _NEWBORN_HI)  # YYMMDD of every possible birth day, from _BIRTH_LO


def _insz(birth_day: np.ndarray, serial: np.ndarray) -> np.ndarray:
    base9 = _YYMMDD[birth_day.astype(np.int64) - _BIRTH_LO] * 1000 + serial.astype(np.int64)
    return base9 * 100 + insz_check_digits(base9, birth_day >= _Y2000)


def _unique_ids(
    rng: np.random.Generator, n: int, lo: int, hi: int, power: float
) -> tuple[np.ndarray, np.ndarray]:
    """n distinct (birth_day, serial) pairs with birth_day in [lo, hi], in random order."""
    span = hi - lo + 1
    if n > span * _SERIALS // 2:
        raise ValueError(f"cannot draw {n} distinct national numbers from {span} birth days")
    # Mark drawn (day, serial) keys in a bitmap of the whole key space: no sorting, and the result does
    # not depend on the order of the draws. Then take n of the distinct keys in random order.
    seen = np.zeros(span * 1000, dtype=bool)
    found = 0
    while found < n:
        m = int((n - found) * 1.2) + 64
        # u ** power with power < 1 puts more weight on recent birth dates (younger population)
        days = np.minimum((span * rng.random(m) ** power).astype(np.int64), span - 1)
        seen[days * 1000 + rng.integers(1, _SERIALS + 1, m)] = True
        found = int(np.count_nonzero(seen))
    distinct = np.flatnonzero(seen)
    keys = distinct[rng.choice(len(distinct), n, replace=False)]
    return (keys // 1000 + lo).astype(np.int32), (keys % 1000).astype(np.int16)


# --------------------------------------------------------------------------------------------------
# Row generation
# --------------------------------------------------------------------------------------------------


def _address(rng: np.random.Generator, muni: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Street, house number and box codes for people living in the given municipalities."""
    n = len(muni)
    lang = _D.muni_lang[muni].astype(np.int64)
    bi = lang == 2
    lang[bi] = rng.random(int(bi.sum())) < 0.5
    street = _D.street_off[lang] + (rng.random(n) * _D.street_len[lang]).astype(np.int64)
    number = (rng.random(n) ** 2.5 * _HOUSE_MAX).astype(np.int64)  # mostly low numbers
    suffix = np.where(rng.random(n) < 0.03, rng.integers(1, 3, n), 0)
    house = number + suffix * _HOUSE_MAX
    box = np.where(rng.random(n) < 0.10, (rng.random(n) ** 2 * (len(_BOXES) - 1)).astype(np.int64) + 1, 0)
    return street.astype(np.int16), house.astype(np.int16), box.astype(np.int8)


def _first_names(rng: np.random.Generator, male: np.ndarray, p2: float, p3: float) -> tuple[np.ndarray, ...]:
    n = len(male)
    sx = male.astype(np.int64)
    off, ln = _D.first_off[sx], _D.first_len[sx]
    # three distinct names: the 2nd and 3rd are offsets d1 != d2 in 1..len-1 from the 1st (modulo len)
    k0 = (rng.random(n) * ln).astype(np.int64)
    d1 = 1 + (rng.random(n) * (ln - 1)).astype(np.int64)
    d2 = 1 + (rng.random(n) * (ln - 2)).astype(np.int64)
    d2 += d2 >= d1
    fn = [(off + (k0 + d) % ln).astype(np.int16) for d in (0, d1, d2)]
    has2 = rng.random(n) < p2
    has3 = has2 & (rng.random(n) < p3 / max(p2, 1e-12))
    fn[1][~has2] = -1
    fn[2][~has3] = -1
    return tuple(fn)


def _age(birth_day: np.ndarray, on: int) -> np.ndarray:
    return (on - birth_day.astype(np.int64)) // 365.25


def _day1(rng: np.random.Generator, n: int) -> _Persons:
    birth_day, serial = _unique_ids(rng, n, _BIRTH_LO, _BIRTH_HI, 0.8)
    male = (serial % 2).astype(bool)
    fn1, fn2, fn3 = _first_names(rng, male, 0.55, 0.20)
    muni = rng.choice(len(_MUNICIPALITIES), n, p=_D.muni_p).astype(np.int8)
    street, house, box = _address(rng, muni)

    age = _age(birth_day, _DAY1)
    bucket = np.searchsorted(_CIVIL_AGE_EDGES, age, side="right")
    u = rng.random(n)
    civil = np.empty(n, dtype=np.int8)
    for b in range(len(_CIVIL_CUM)):
        sel = bucket == b
        civil[sel] = np.minimum(np.searchsorted(_CIVIL_CUM[b], u[sel], side="right"), len(_CIVIL) - 1)

    # A few elderly people are already deceased in day 1.
    death_day = np.full(n, _NO_DATE, dtype=np.int32)
    dead = (age >= 70) & (rng.random(n) < 0.02)
    lo = np.maximum(birth_day[dead].astype(np.int64), _DEATH1_LO)
    death_day[dead] = lo + (rng.random(int(dead.sum())) * (_DAY1 - lo)).astype(np.int64)

    last = rng.choice(len(_LAST_NAMES), n, p=_D.last_p).astype(np.int16)
    nat = rng.choice(len(_NATIONALITIES), n, p=_NATIONALITY_P).astype(np.int8)

    if n:
        for i, rate in enumerate(_SPECIAL_STREET_RATES):
            street[rng.integers(0, n, max(1, round(n * rate)))] = _D.street_special0 + i
        for i in range(len(_LAST_NAMES_SPECIAL)):
            last[rng.integers(0, n, max(1, round(n * _SPECIAL_LAST_NAME_RATE)))] = len(_LAST_NAMES) + i

    return _Persons(birth_day, serial, last, fn1, fn2, fn3, nat, muni, street, house, box, civil, death_day)


def _pick(rng: np.random.Generator, eligible: np.ndarray, taken: np.ndarray, k: int) -> np.ndarray:
    """k distinct eligible, not yet taken row indices (fewer if there are not enough); marks them taken."""
    pool = np.flatnonzero(eligible & ~taken)
    k = min(k, len(pool))
    idx = np.sort(pool[rng.choice(len(pool), k, replace=False)]) if k else pool[:0]
    taken[idx] = True
    return idx


def _newborns(rng: np.random.Generator, nb: int) -> _Persons:
    """Persons born in 2025 (so their national numbers use the 2000-or-later rule)."""
    birth_day, serial = _unique_ids(rng, nb, _NEWBORN_LO, _NEWBORN_HI, 1.0)
    fn1, fn2, fn3 = _first_names(rng, (serial % 2).astype(bool), 0.5, 0.1)
    muni = rng.choice(len(_MUNICIPALITIES), nb, p=_D.muni_p).astype(np.int8)
    street, house, box = _address(rng, muni)
    return _Persons(
        birth_day=birth_day,
        serial=serial,
        last=rng.choice(len(_LAST_NAMES), nb, p=_D.last_p).astype(np.int16),
        fn1=fn1,
        fn2=fn2,
        fn3=fn3,
        nat=rng.choice(len(_NATIONALITIES), nb, p=_NEWBORN_NATIONALITY_P).astype(np.int8),
        muni=muni,
        street=street,
        house=house,
        box=box,
        civil=np.zeros(nb, dtype=np.int8),
        death_day=np.full(nb, _NO_DATE, dtype=np.int32),
    )


def _day2(rng: np.random.Generator, p1: _Persons, change_rate: float) -> _Persons:
    n = len(p1)
    nb = round(n * _INSERT_RATE)
    p = _Persons.concat(p1, _newborns(rng, nb))  # a copy: day 1 rows first, then the births
    alive = p1.death_day == _NO_DATE
    age = _age(p1.birth_day, _DAY1)
    taken = np.zeros(n, dtype=bool)
    n_upd = round(n * change_rate)
    n_move = round(n_upd * _MOVE_SHARE)
    n_civil = round(n_upd * _CIVIL_SHARE)
    n_death = n_upd - n_move - n_civil

    # Deaths first (mostly among the elderly), then civil-status changes (adults), moves, emigration.
    death = _pick(rng, alive & (age >= 65), taken, n_death)
    if len(death) < n_death:
        death = np.concatenate([death, _pick(rng, alive, taken, n_death - len(death))])
    p.death_day[death] = rng.integers(_DEATH2_LO, _DEATH2_HI + 1, len(death))

    civil = _pick(rng, alive & (age >= 18), taken, n_civil)
    p.civil[civil] = _CIVIL_NEXT[p.civil[civil], rng.integers(0, 2, len(civil))]

    move = _pick(rng, alive, taken, n_move)
    m = len(_MUNICIPALITIES)
    p.muni[move] = (p.muni[move] + rng.integers(1, m, len(move))) % m  # always a different municipality
    p.street[move], p.house[move], p.box[move] = _address(rng, p.muni[move])

    emigrated = _pick(rng, alive, taken, round(n * _DELETE_RATE))
    keep = np.ones(n + nb, dtype=bool)
    keep[emigrated] = False
    return p.take(rng.permutation(np.flatnonzero(keep)))  # shuffled row order


def _generate(rows: int, seed: int, change_rate: float) -> tuple[_Persons, _Persons]:
    if rows < 0:
        raise ValueError("rows must be >= 0")
    if not 0.0 <= change_rate <= 0.5:
        raise ValueError("change_rate must be between 0 and 0.5")
    rng = np.random.default_rng(seed)
    p1 = _day1(rng, rows)
    return p1, _day2(rng, p1, change_rate)


# --------------------------------------------------------------------------------------------------
# Materialisation and CSV
# --------------------------------------------------------------------------------------------------


_DATE_LO, _DATE_HI = _BIRTH_LO, _DEATH2_HI
# Every date that can occur, as text; the extra last entry is null (no date).
_DATE_TEXT = pa.concat_arrays(
    [
        pa.array(np.arange(_DATE_LO, _DATE_HI + 1, dtype=np.int32)).cast(pa.date32()).cast(pa.string()),
        pa.nulls(1, pa.string()),
    ]
)


def _date_codes(days: np.ndarray) -> np.ndarray:
    return np.where(days == _NO_DATE, _DATE_HI - _DATE_LO + 1, days.astype(np.int64) - _DATE_LO)


def _take(values: pa.Array, codes: np.ndarray) -> pa.Array:
    codes = codes.astype(np.int32)
    mask = codes < 0
    return values.take(pa.array(codes, mask=mask if mask.any() else None))


def _table(p: _Persons, d: _Dicts) -> pa.Table:
    first = pc.binary_join_element_wise(
        _take(_D.first, p.fn1), _take(_D.first, p.fn2), _take(_D.first, p.fn3), " ", null_handling="skip"
    )
    if d.csv:
        first = _csv_field(first)
    arrays = [
        pc.utf8_lpad(pa.array(_insz(p.birth_day, p.serial)).cast(pa.string()), width=11, padding="0"),
        _take(d.last, p.last),
        first,
        _take(d.dates, _date_codes(p.birth_day)),
        _take(d.sex, p.serial % 2),
        _take(d.nat, p.nat),
        _take(d.nis, p.muni),
        _take(d.street, p.street),
        _take(d.house, p.house),
        _take(d.box, p.box),
        _take(d.postal, p.muni),
        _take(d.civil, p.civil),
        _take(d.dates, _date_codes(p.death_day)),
    ]
    return pa.Table.from_arrays(arrays, names=list(COLUMNS))


def persons_pair(rows: int, *, seed: int = 1, change_rate: float = 0.005) -> tuple[pa.Table, pa.Table]:
    """Day 1 and day 2 person tables (all columns text, missing values null)."""
    p1, p2 = _generate(rows, seed, change_rate)
    return _table(p1, _D), _table(p2, _D)


def _csv_field(arr: pa.Array) -> pa.Array:
    """Text of one CSV column: quoted only where needed (delimiter, quote, line break, empty), null -> ''."""
    return csvwrite.encode_field(arr, ";", quote_empty=True)


_D = _Dicts()
_DQ = _Dicts(csv=True)


_CHUNK_ROWS = 500_000


def _write_csv(p: _Persons, path: Path) -> None:
    with open(path, "wb") as f:
        f.write(csvwrite.header_line(COLUMNS, ";", "\n"))
        for start in range(0, len(p), _CHUNK_ROWS):
            csvwrite.write_encoded(_table(p.slice(start, start + _CHUNK_ROWS), _DQ).columns, f, ";", "\n")


def write_persons_pair(
    rows: int, outdir: Path, *, seed: int = 1, change_rate: float = 0.005
) -> tuple[Path, Path]:
    """Write outdir/persons_day1.csv and outdir/persons_day2.csv; return both paths.

    UTF-8, ';' delimiter, header line, '"' quoting only where needed, null as an empty field, '\\n' line ends.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    p1, p2 = _generate(rows, seed, change_rate)
    paths = (outdir / "persons_day1.csv", outdir / "persons_day2.csv")
    _write_csv(p1, paths[0])
    _write_csv(p2, paths[1])
    return paths
