"""Short codes that carry a teaching case or a deck: no account, no server storage, nothing
personal; the same code gives the same page (same image bytes) on any copy of the app.

A code is ``version/kind`` (one byte), a fixed payload and a 16-bit CRC, written in base32
(RFC 4648 letters A-Z and 2-7) in groups of four: ``CAUE-WCAA-...``. Reading is forgiving:
case, spaces and dashes do not matter, a pasted URL with ``?case=`` or ``?deck=`` is accepted, and
0/1/8 are read as the O/I/B they look like. A typo fails the CRC: a clear message, never another
case.

A case payload is 12 bytes: rate (bpm), PR (ms), rhythm/ectopy/QRS/axis, ST shift per territory
(hundredths of a mV), T-wave inversion, long QT, low voltage, LVH, picture style and seed.

>>> data = pack_case({"rate_bpm": 75.0, "rhythm": "afib", "ectopy": None, "pr_ms": 160.0,
...                   "qrs": "rbbb", "axis": "normal", "st": {"inferior": 0.2},
...                   "t_inversion": [], "qt_long": False, "low_voltage": False,
...                   "lvh": False}, seed=3, distort="photo")
>>> code = encode(KIND_CASE, data)
>>> decode(code.lower().replace("-", " ")) == (KIND_CASE, data)
True
>>> unpack_case(data)[0]["st"], unpack_case(data)[1:]
({'inferior': 0.2}, (3, 'photo'))
"""

from __future__ import annotations

import base64
import re
import struct
import zlib

from pulse_app.errors import FindingsInvalid, PulseError

VERSION = 1
#: What a code holds.
KIND_CASE, KIND_DECK, KIND_LEVEL_DECK = 1, 2, 3
KINDS = {KIND_CASE: "case", KIND_DECK: "deck", KIND_LEVEL_DECK: "deck"}
#: The simulator's choices, in the order their index is written (never reorder: old codes).
RHYTHMS = ("sinus", "sinus_arrhythmia", "afib", "aflutter")
ECTOPY = (None, "pvc", "pac")
QRS = ("normal", "rbbb", "lbbb")
AXES = ("normal", "left", "right")
TERRITORIES = ("inferior", "anterior", "lateral")
PICTURES = ("none", "photo", "all")
#: rate u8, PR u16, choices u8, ST 3 x i8, flags u8, seed u32 (big-endian).
_CASE = struct.Struct(">BHB3bBI")
CASE_BYTES = _CASE.size
_SIMILAR = str.maketrans({"0": "O", "1": "I", "8": "B"})


class CodeInvalid(PulseError):
    """A case or deck code that cannot be read (mistyped, cut short, from a newer app)."""

    exit_code = 10


def encode(kind: int, payload: bytes) -> str:
    """``payload`` of ``kind`` as a code (base32 with a CRC, dashes every four letters)."""
    body = bytes([VERSION << 4 | kind]) + payload
    data = body + struct.pack(">H", zlib.crc32(body) & 0xFFFF)
    text = base64.b32encode(data).decode().rstrip("=")
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def decode(code: str) -> tuple[int, bytes]:
    """(kind, payload) of a code; :class:`CodeInvalid` with what to do when it cannot be read."""
    text = str(code or "").strip()
    found = re.search(r"[?&](?:case|deck)=([^&#\s]+)", text)     # a pasted link
    if found:
        text = found.group(1)
    text = re.sub(r"[\s\-_.]", "", text).upper().translate(_SIMILAR)
    if not text:
        raise CodeInvalid("no code given", hint="paste the code or link you were given")
    if not re.fullmatch(r"[A-Z2-7]+", text):
        raise CodeInvalid("this is not a case or deck code (it has letters a code never has)",
                          hint="check the code or ask for the link again")
    try:
        data = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        data = b""
    if len(data) < 4 or struct.unpack(">H", data[-2:])[0] != zlib.crc32(data[:-2]) & 0xFFFF:
        raise CodeInvalid("this code is mistyped or incomplete (its check letters do not match)",
                          hint="check the code letter by letter, or ask for the link again")
    version, kind = data[0] >> 4, data[0] & 0x0F
    if version != VERSION or kind not in KINDS:
        raise CodeInvalid(f"this code was made by another version of the app (v{version})",
                          hint="open it on the app that made it")
    return kind, data[1:-2]


def pack_case(findings: dict, *, seed: int, distort: str) -> bytes:
    """A canonical findings dict (whole bpm and ms, ST in hundredths of a mV; see
    :meth:`pulse_app.teaching.Case.make`), its seed and picture style as 12 bytes."""
    st = [round(100 * float(findings.get("st", {}).get(t, 0.0))) for t in TERRITORIES]
    if any(abs(v) > 127 for v in st):
        raise FindingsInvalid("an ST shift beyond 1.27 mV cannot be shared",
                              hint="choose a shift between -1.27 and 1.27 mV")
    if not 0 <= int(seed) < 2 ** 32:
        raise FindingsInvalid(f"seed {seed} cannot be shared", hint="choose a seed 0-4294967295")
    inverted = set(findings.get("t_inversion") or ())
    flags = sum(1 << i for i, t in enumerate(TERRITORIES) if t in inverted)
    flags |= (bool(findings.get("qt_long")) << 3 | bool(findings.get("low_voltage")) << 4
              | bool(findings.get("lvh")) << 5)
    choices = (RHYTHMS.index(findings["rhythm"]) | ECTOPY.index(findings.get("ectopy")) << 2
               | QRS.index(findings["qrs"]) << 4 | AXES.index(findings["axis"]) << 6)
    return _CASE.pack(int(findings["rate_bpm"]), int(findings["pr_ms"]), choices, *st,
                      flags | PICTURES.index(distort) << 6, int(seed))


def unpack_case(data: bytes) -> tuple[dict, int, str]:
    """(findings, seed, picture style) of a 12-byte case payload."""
    if len(data) != CASE_BYTES:
        raise CodeInvalid("this case code is cut short", hint="copy the whole code")
    rate, pr, choices, *st, flags, seed = _CASE.unpack(data)
    try:
        findings = {
            "rate_bpm": float(rate), "rhythm": RHYTHMS[choices & 3],
            "ectopy": ECTOPY[choices >> 2 & 3], "pr_ms": float(pr), "qrs": QRS[choices >> 4 & 3],
            "axis": AXES[choices >> 6 & 3],
            "st": {t: v / 100 for t, v in zip(TERRITORIES, st) if v},
            "t_inversion": [t for i, t in enumerate(TERRITORIES) if flags >> i & 1],
            "qt_long": bool(flags >> 3 & 1), "low_voltage": bool(flags >> 4 & 1),
            "lvh": bool(flags >> 5 & 1)}
        distort = PICTURES[flags >> 6]
    except IndexError:
        raise CodeInvalid("this case code holds a finding this app does not know",
                          hint="open it on the app that made it") from None
    return findings, seed, distort
