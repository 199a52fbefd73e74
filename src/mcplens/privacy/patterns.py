"""Compiled detectors for secrets and personal data, each tied to the placeholder kind it emits.

Two families:

* **value patterns** (:data:`PATTERNS`), applied in order to any text. Order matters: the longest
  and most specific shapes go first (private key blocks, URL credentials, JWTs, auth headers,
  provider tokens) so that a later, looser pattern (cards, emails, IPs, phones) never sees a
  fragment of something already replaced. Each pattern has a cheap *gate* (substring tests) so a
  string that cannot match never pays for the regex, and a *replace* function that may validate
  the match (Luhn for cards, mod 97 for IBANs, entropy for AWS secret keys) and return ``None``
  to keep it.
* **key names** (:func:`key_kind`): a key such as ``apiKey``, ``X-Api-Key``, ``user_id`` or
  ``email_address`` is split into lower-case words (camelCase and any separator) and classified;
  the value under it is then replaced by ``[REDACTED:<KIND>]`` whatever it looks like.

Placeholders never keep any part of the original: no prefix, suffix or length-revealing mask.
Pure standard library.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

# ---------------------------------------------------------------- validators


def luhn_ok(digits: str) -> bool:
    """True when a string of decimal digits passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand_ok(digits: str) -> bool:
    """A 13-19 digit number whose prefix (IIN) and length fit a real card scheme.

    Luhn alone passes one random number in ten; the IIN check keeps millisecond timestamps,
    order numbers and the like from being read as cards.
    """
    n = len(digits)
    if not 13 <= n <= 19:
        return False
    d1, d2, d4 = digits[0], digits[:2], int(digits[:4])
    if d1 == "4":  # Visa
        return n in (13, 16, 19)
    if d2 in ("34", "37"):  # Amex
        return n == 15
    if "51" <= d2 <= "55" or 2221 <= d4 <= 2720:  # Mastercard
        return n == 16
    if d2 in ("30", "36", "38", "39"):  # Diners
        return 14 <= n <= 19
    if d2 == "35":  # JCB
        return 16 <= n <= 19
    if d2 in ("60", "62", "64", "65", "81"):  # Discover, UnionPay, RuPay-ish
        return 16 <= n <= 19
    if d2 in ("50", "56", "57", "58", "63", "67", "68", "69"):  # Maestro
        return 12 <= n <= 19
    return False


def is_card_number(digits: str) -> bool:
    return digits.isdigit() and card_brand_ok(digits) and luhn_ok(digits)


#: IBAN length per country (ISO 13616 registry, common countries)
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(compact: str) -> bool:
    """ISO 7064 mod 97-10 check of an IBAN without spaces."""
    if len(compact) < 15 or len(compact) > 34 or not compact[2:4].isdigit():
        return False
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    moved = compact[4:] + compact[:4]
    num = "".join(str(int(ch, 36)) for ch in moved)
    return int(num) % 97 == 1


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    if not s:
        return 0.0
    counts: dict[str, int] = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _classes(s: str) -> tuple[bool, bool, bool]:
    return (any(c.isupper() for c in s), any(c.islower() for c in s), any(c.isdigit() for c in s))


def looks_random(s: str, min_entropy: float = 4.0) -> bool:
    """Mixed upper, lower and digits, and high entropy: a key body, not a word or a hex digest."""
    up, low, dig = _classes(s)
    return up and low and dig and entropy(s) >= min_entropy


def tokenish(s: str) -> bool:
    """An auth-header credential rather than a prose word: has a digit, a symbol, or inner caps."""
    if len(s) < 8:
        return False
    if any(c.isdigit() for c in s) or any(c in "._~+/=-" for c in s):
        return True
    return any(a.islower() and b.isupper() for a, b in zip(s, s[1:], strict=False))


# ---------------------------------------------------------------- value patterns

Replace = Callable[[re.Match[str]], "str | None"]


# feature bits: one cheap look at a string says which pattern families can possibly match
F_RUN = 1  # a run of 16+ token characters (keys, tokens, blobs)
F_AT = 2  # "@"
F_COLON = 4  # ":"
F_EQ = 8  # "="
F_DASH = 16  # "-"
F_NUM = 32  # 9+ digits in a row, spaces, dashes, dots or brackets allowed between them
F_DOTNUM = 64  # digit.digit (IPv4)
F_KW = 128  # an auth / cookie keyword
F_HOME = 256  # a home-directory path
F_ID = 512  # six digits in a row (separators allowed), or a dotted MAC


@dataclass(frozen=True, slots=True)
class Pattern:
    """One detector: ``regex`` finds candidates, ``replace`` returns the new text or None to keep.

    It runs only when the text has one of the ``need`` feature bits, is at least ``min_len`` long,
    and contains one of ``needles`` (case-sensitive) / ``low_needles`` (in the lower-cased text).
    """

    kind: str  # counter key, also the placeholder text between brackets
    regex: re.Pattern[str]
    replace: Replace
    need: int
    needles: tuple[str, ...] = ()
    low_needles: tuple[str, ...] = ()
    min_len: int = 0
    gate: Callable[[str], bool] | None = None  # a last cheap check before the regex runs


def ph(kind: str) -> str:
    return f"[{kind}]"


def _whole(kind: str, check: Callable[[str], bool] | None = None) -> Replace:
    placeholder = ph(kind)

    def replace(m: re.Match[str]) -> str | None:
        if check is not None and not check(m.group(0)):
            return None
        return placeholder

    return replace


def _swap(m: re.Match[str], group: str, placeholder: str) -> str:
    """The whole match with only ``group`` replaced by ``placeholder`` (the text around it kept)."""
    s, e = m.span(group)
    base = m.start()
    whole = m.group(0)
    return whole[: s - base] + placeholder + whole[e - base :]


def _group(kind: str, group: str = "v") -> Replace:
    """Replace only the named group, keep the text around it (e.g. ``Cookie: [COOKIE]``)."""
    placeholder = ph(kind)

    def replace(m: re.Match[str]) -> str | None:
        v = m.group(group)
        if not v or v.startswith("["):
            return None
        return _swap(m, group, placeholder)

    return replace


# private key blocks: up to END, or to the end of the text when the block is cut off
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|.*)",
    re.S,
)
# scheme://userinfo@host: the whole userinfo goes, whatever it holds
_URL_CREDS = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,30}://(?P<v>[^\s/?#\"'<>\\@]+(?:@[^\s/?#\"'<>\\@]+)*)@")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*", re.A)
_AUTH_NAMED = re.compile(
    r"(?i)\b(?:proxy-)?authori[sz]ation[\"']?\s*[:=]\s*[\"']?(?P<v>[^\"'\r\n]+)",
)
_AUTH_SCHEME = re.compile(r"(?i)\b(?:bearer|basic|digest|token|negotiate|ntlm|apikey)\s+(?P<v>[A-Za-z0-9._~+/=-]{8,})")
_AWS_ACCESS = re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA|A3T[A-Z0-9])[A-Z0-9]{16}\b")
_GITHUB = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})\b")
_GITLAB = re.compile(r"\bgl(?:pat|dt|ptt|rt|oas)-[A-Za-z0-9_-]{20,}")
_SLACK = re.compile(
    r"\bxox[abposre]-[A-Za-z0-9-]{10,}|\bxapp-\d-[A-Za-z0-9-]{10,}"
    r"|https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+"
)
_STRIPE = re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|\bwhsec_[A-Za-z0-9]{24,}")
_ANTHROPIC = re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")
_OPENAI = re.compile(r"\bsk-(?:proj-|svcacct-|admin-|None-)?(?P<v>[A-Za-z0-9_-]{20,})")
_GOOGLE = re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")
_AWS_SECRET_CTX = re.compile(
    r"(?i)(?:aws|secret)[\w\"'.-]{0,30}[\s\"'=:]{1,4}(?P<v>(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=]))"
)
_B40 = re.compile(r"(?<![A-Za-z0-9/+=_-])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=_-])")
_COOKIE = re.compile(r"(?i)\b(?:set-)?cookies?[\"']?\s*[:=]\s*[\"']?(?P<v>[^\"'\r\n]+)")
# key=value / key: value / "key": "value" / --key value inside free text; the key is classified
_KV = re.compile(
    r"(?P<k>(?i:user\s+id)|(?<![\w.-])[A-Za-z_][A-Za-z0-9_.-]{1,40})[\"']?\s*(?:=|:(?!//))\s*"
    r"(?:\"(?P<q1>[^\"]*)\"|'(?P<q2>[^']*)'|"
    # unquoted: up to a delimiter, plus following Capitalised words ("Alice Johnson") that are not keys
    r"(?P<u>(?![\[{])[^\s,;&\"'}\])]+(?:[ ](?![A-Za-z_][\w.-]*[\"']?\s*[=:])[A-Z][\w'.-]*)*))"
)
_CLI = re.compile(r"(?<!\S)--?(?P<k>[A-Za-z][\w-]{1,40})[ =](?P<u>(?![-\[])\S+)")
_DATA_URI = re.compile(r"\bdata:[\w/+.-]{0,64}(?:;[\w.+-]+=?[\w.+-]*){0,4},[A-Za-z0-9+/=%._~-]*", re.A)
_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{64,}={0,2}")
_HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{128,}(?![0-9A-Za-z])")
_HOME = re.compile(r"(?:/home/|/Users/|\\Users\\|\\\\Users\\\\|/var/mail/)(?P<v>(?!\[)[^/\\\s\"':]+)")
_CARD = re.compile(r"(?<![\d+])\d+(?:[ -]\d+)*")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,}\b")
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
_MAC = re.compile(r"(?<![\w:-])[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![\w:-])")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3}|:?)(?:%[\w.]+)?(?![\w:])"
)
_IPV4 = re.compile(
    r"(?<![\w.])(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(?![\w]|\.\d)"
)
# each digit consumed once, separators between them: no ambiguous splits, so no catastrophic backtracking
# no upper bound: two numbers glued by a space go as one run, never half of one
_PHONE_INTL = re.compile(r"(?<![\w+])\+(?:\d[ .()/-]{0,2}){7,40}\d(?![\w])")
_PHONE_NANP = re.compile(r"(?<![\w.+-])(?:1[ .-])?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|\.\d)")
_PHONE_TRUNK = re.compile(r"(?<![\w.+/-])0\d{1,4}(?:[ ./-]?\d{2,4}){2,5}(?![\w/-]|\.\d)")
_DIGITS = re.compile(r"\d")
# phones in national formats: a parenthesised area code, and digit groups split by single spaces
_PHONE_AREA = re.compile(r"(?<![\w+(])\(0?\d{1,4}\)[ .-]?\d{2,5}(?:[ .-]\d{2,5}){0,3}(?![\w-])")
# a run of space-separated digit groups is taken whole (a list of numbers goes as one)
_PHONE_SPACED = re.compile(r"(?<![\w.+,:/-])(?:[6-9]\d{4} \d{5}|\d{2,5}(?: \d{2,5}){2,})(?![\w,:/-]|\.\d)")
# framework validation errors echo the rejected input (pydantic: ``input_value=..., input_type=``)
_INPUT_ECHO = re.compile(r"input_value=(?P<v>[^\n]*?)(?=, input_type=|\n|$)")
# provider keys not covered above, by their documented prefixes
_PROVIDER = re.compile(
    r"\b(?:npm_[A-Za-z0-9]{36}|hf_[A-Za-z0-9]{30,}|SG\.[\w-]{16,}\.[\w-]{16,}|shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"
    r"|dop_v1_[a-f0-9]{64}|pypi-AgE[A-Za-z0-9_-]{50,}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|xai-[A-Za-z0-9]{40,}"
    r"|gsk_[A-Za-z0-9]{40,}|r8_[A-Za-z0-9]{30,}|sntry[su]_[A-Za-z0-9+/=_-]{40,}|lin_api_[A-Za-z0-9]{30,}"
    r"|dp\.(?:pt|st|scim)\.[A-Za-z0-9]{40,}|sq0(?:atp|csp)-[\w-]{22,}|AC[a-f0-9]{32}|SK[a-f0-9]{32})(?![\w-])"
)
_PROVIDER_NEEDLES = ("npm_", "hf_", "SG.", "shp", "dop_v1_", "pypi-", "glsa_", "xai-", "gsk_", "r8_", "sntry",
                     "lin_api_", "dp.", "sq0", "AC", "SK")  # fmt: skip
# national ids
_SSN_CTX = re.compile(
    r"(?i)\b(?:ssn|ss#|social[ _-]?security(?:[ _-]?(?:number|no|num|nr))?)\W{0,4}"
    r"(?:(?:is|was|number|no|num|nr)\.?\W{1,3})?(?P<v>\d{9}|\d{3}[ .]\d{2}[ .]\d{4})(?!\d)"
)
_CODICE_FISCALE = re.compile(r"\b[A-Z]{6}\d{2}[A-EHLMPRST]\d{2}[A-Z]\d{3}[A-Z]\b")
_MAC_DOTTED = re.compile(r"(?<![\w.])[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}(?![\w.])")


def _aadhaar_ok(s: str) -> bool:
    """Verhoeff check digit (UIDAI)."""
    c = 0
    for i, ch in enumerate(reversed(s.replace(" ", "").replace("-", ""))):
        c = _VD[c][_VP[i % 8][ord(ch) - 48]]
    return c == 0


_VD = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
       (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
       (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
       (9, 8, 7, 6, 5, 4, 3, 2, 1, 0))  # fmt: skip
_VP = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
       (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
       (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8))  # fmt: skip


#: SSN, CPF, Aadhaar and SIN in one search: they share the digit groups, each is then validated
_NATIONAL_NUM = re.compile(
    r"(?<![\w.-])(?:(?P<ssn>(?!000|666|9\d\d)\d{3}(?P<s>[- ])(?!00)\d{2}(?P=s)(?!0000)\d{4})"
    r"|(?P<cpf>\d{3}\.\d{3}\.\d{3}-\d{2})"
    r"|(?P<aadhaar>[2-9]\d{3}(?P<a>[ -])\d{4}(?P=a)\d{4})"
    r"|(?P<sin>\d{3}(?P<t>[ -])\d{3}(?P=t)\d{3}))(?![\w-])"
)


def _national_num_replace(m: re.Match[str]) -> str | None:
    if m.group("ssn") or m.group("cpf"):
        return ph("NATIONAL_ID")
    if m.group("aadhaar"):
        return ph("NATIONAL_ID") if _aadhaar_ok(m.group(0)) else None
    return ph("NATIONAL_ID") if _sin_ok(m.group(0)) else None


#: NINO and DNI/NIE in one search (letters and digits in a fixed order), each then validated
_NATIONAL_ALNUM = re.compile(
    r"\b(?:(?P<nino>(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D])"
    r"|(?P<dni>[XYZ]?\d{7,8}[A-HJ-NP-TV-Z]))\b"
)


def _national_alnum_replace(m: re.Match[str]) -> str | None:
    if m.group("nino") or _dni_ok(m.group(0)):
        return ph("NATIONAL_ID")
    return None


def _sin_ok(s: str) -> bool:
    d = s.replace(" ", "").replace("-", "")
    return d[0] not in "08" and luhn_ok(d)


def _dni_ok(s: str) -> bool:
    n = {"X": "0", "Y": "1", "Z": "2"}.get(s[0], s[0]) + s[1:]
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(n[:-1]) % 23] == n[-1]


def _mac_dotted_ok(s: str) -> bool:
    return not s.replace(".", "").isdigit()  # 2024.1115.0930 is a build number


def _card_replace(m: re.Match[str]) -> str | None:
    """A run of digit groups: find 13-19 consecutive digits (whole groups) that form a real card."""
    run = m.group(0)
    if len(run) < 13:
        return None
    parts = re.split(r"([ -])", run)
    groups = parts[0::2]
    seps = parts[1::2]
    n = len(groups)
    for i in range(n):
        total = 0
        best = -1
        for j in range(i, min(n, i + 8)):
            total += len(groups[j])
            if total > 19:
                break
            if total >= 13 and is_card_number("".join(groups[i : j + 1])):
                best = j
        if best >= 0:
            before = "".join(g + s for g, s in zip(groups[:i], seps[:i], strict=False))
            after_parts = []
            for k in range(best + 1, n):
                after_parts.append(seps[k - 1] + groups[k])
            rest = "".join(after_parts)
            tail = _card_replace_text(rest) if rest else ""
            return before + ph("CARD") + tail
    return None


def _card_replace_text(rest: str) -> str:
    # a second card in the same digit run (rare): one more pass over what follows the first
    m = _CARD.search(rest)
    if m is None:
        return rest
    r = _card_replace(m)
    return rest if r is None else rest[: m.start()] + r + rest[m.end() :]


def _iban_replace(m: re.Match[str]) -> str | None:
    """A run of IBAN-like groups: walk it, replacing each valid IBAN (several may sit side by side)."""
    raw = m.group(0)
    out: list[str] = []
    pos = last = 0
    found = False
    n = len(raw)
    while pos < n:
        if raw[pos : pos + 2].isalpha() and raw[pos : pos + 2].isupper() and raw[pos + 2 : pos + 4].isdigit():
            want = IBAN_LENGTHS.get(raw[pos : pos + 2])
            lengths = [want] if want else range(34, 14, -1)
            end = -1
            for length in lengths:
                seen, j = 0, pos
                chars = []
                while j < n and seen < length:
                    if raw[j] != " ":
                        chars.append(raw[j])
                        seen += 1
                    j += 1
                if seen == length and (j == n or raw[j] == " ") and iban_ok("".join(chars)):
                    end = j
                    break
            if end > 0:
                out.append(raw[last:pos])
                out.append(ph("IBAN"))
                pos = last = end
                found = True
                continue
        nxt = raw.find(" ", pos)
        if nxt < 0:
            break
        pos = nxt + 1
    if not found:
        return None
    out.append(raw[last:])
    return "".join(out)


#: "logo@2x.png" is a file name, not an address: top-level "domains" that are file extensions
_FILE_TLDS = frozenset(
    "png jpg jpeg gif svg webp ico bmp pdf txt js mjs ts tsx jsx css scss html htm json yaml yml csv tsv zip gz "
    "tar lock log mp3 mp4 wav mov py md rs rb java kt c h cpp hpp toml ini cfg xml".split()
)


def _email_ok(s: str) -> bool:
    return s.rsplit(".", 1)[-1].lower() not in _FILE_TLDS


def _ipv6_replace(m: re.Match[str]) -> str | None:
    raw = m.group(0)
    addr = raw.split("%", 1)[0]
    if sum(1 for g in addr.split(":") if g) < 3:
        return None
    try:
        ip = ipaddress.IPv6Address(addr)
    except ValueError:
        return None
    if ip.is_loopback or ip.is_unspecified:
        return None
    return ph("IPV6")


def _ipv4_replace(m: re.Match[str]) -> str | None:
    raw = m.group(0)
    if raw.startswith("127.") or raw == "0.0.0.0" or raw.startswith("255."):
        return None
    return ph("IPV4")


def _phone_check(lo: int, hi: int, one_sep: bool = False) -> Callable[[str], bool]:
    def check(s: str) -> bool:
        digits = sum(c.isdigit() for c in s)
        if not lo <= digits <= hi:
            return False
        if one_sep:
            seps = {c for c in s if c in " .-"}
            if len(seps) > 1:
                return False
        return True

    return check


def _b40_replace(m: re.Match[str]) -> str | None:
    return ph("AWS_SECRET_KEY") if looks_random(m.group(0), 4.2) else None


def _openai_replace(m: re.Match[str]) -> str | None:
    body = m.group("v")
    up, low, dig = _classes(body)
    return ph("OPENAI_KEY") if (up and low and dig) or "T3BlbkFJ" in body else None


def _auth_scheme_replace(m: re.Match[str]) -> str | None:
    v = m.group("v")
    return ph("AUTH_HEADER") if tokenish(v) else None


def blob_placeholder(nbytes: int) -> str:
    return f"[BLOB {nbytes} bytes]"


def _b64_size(body: str) -> int:
    body = body.rstrip("=")
    return len(body) * 3 // 4


def _data_uri_replace(m: re.Match[str]) -> str | None:
    raw = m.group(0)
    head, _, body = raw.partition(",")
    n = _b64_size(body) if ";base64" in head.lower() else len(body)
    return blob_placeholder(n)


def _b64_replace(m: re.Match[str]) -> str | None:
    raw = m.group(0)
    body = raw.rstrip("=")
    if not looks_random(body, 4.2):
        return None
    seps = sum(1 for c in body if c in "/+_-")
    if seps * 8 > len(body):  # paths and slugs, not base64
        return None
    return blob_placeholder(_b64_size(raw))


def _hex_replace(m: re.Match[str]) -> str | None:
    return blob_placeholder(len(m.group(0)) // 2)


#: KV replacement needs key_kind, defined below; the pattern list refers to it lazily
def _kv_replace(m: re.Match[str]) -> str | None:
    kind = key_kind(m.group("k"))
    if kind is None:
        return None
    for g in ("q1", "q2", "u"):
        v = m.group(g)
        if v is not None:
            if not v or v.startswith("["):
                return None
            return _swap(m, g, key_placeholder(kind))
    return None


def _cli_replace(m: re.Match[str]) -> str | None:
    kind = key_kind(m.group("k"))
    if kind is None:
        return None
    return _swap(m, "u", key_placeholder(kind))


#: kinds whose placeholder is produced by a key-name rule inside text (counted as REDACTED:<KIND>)
KV_KIND = "KV"
CLI_KIND = "CLI"


def _mac_gate(s: str) -> bool:
    return s.count(":") >= 5 or s.count("-") >= 5


def _ipv6_gate(s: str) -> bool:
    return "::" in s or s.count(":") >= 7


_AWS_PREFIXES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "ABIA", "ACCA", "AIPA", "APKA", "ASCA", "A3T")
_AUTH_WORDS = ("bearer", "basic", "digest", "token", "negotiate", "ntlm", "apikey")

PATTERNS: tuple[Pattern, ...] = (
    Pattern("INPUT_ECHO", _INPUT_ECHO, _group("INPUT_ECHO"), F_EQ, ("input_value=",)),
    Pattern("PRIVATE_KEY", _PRIVATE_KEY, _whole("PRIVATE_KEY"), F_DASH, ("-----BEGIN",)),
    Pattern("URL_CREDENTIALS", _URL_CREDS, _group("URL_CREDENTIALS"), F_AT, ("://",)),
    Pattern("JWT", _JWT, _whole("JWT"), F_RUN, ("eyJ",)),
    Pattern("AWS_ACCESS_KEY", _AWS_ACCESS, _whole("AWS_ACCESS_KEY"), F_RUN, _AWS_PREFIXES),
    Pattern("GITHUB_TOKEN", _GITHUB, _whole("GITHUB_TOKEN"), F_RUN, ("gh", "github_pat_")),
    Pattern("GITLAB_TOKEN", _GITLAB, _whole("GITLAB_TOKEN"), F_RUN, ("gl",)),
    Pattern("SLACK_TOKEN", _SLACK, _whole("SLACK_TOKEN"), F_RUN, ("xox", "xapp-", "hooks.slack.com")),
    Pattern("STRIPE_KEY", _STRIPE, _whole("STRIPE_KEY"), F_RUN, ("_live_", "_test_", "whsec_")),
    Pattern("ANTHROPIC_KEY", _ANTHROPIC, _whole("ANTHROPIC_KEY"), F_RUN, ("sk-ant-",)),
    Pattern("OPENAI_KEY", _OPENAI, _openai_replace, F_RUN, ("sk-",)),
    Pattern("GOOGLE_API_KEY", _GOOGLE, _whole("GOOGLE_API_KEY"), F_RUN, ("AIza",)),
    Pattern("PROVIDER_KEY", _PROVIDER, _whole("PROVIDER_KEY"), F_RUN, _PROVIDER_NEEDLES),
    Pattern("AWS_SECRET_KEY", _AWS_SECRET_CTX, _group("AWS_SECRET_KEY"), F_RUN, (), ("aws", "secret"), 40),
    Pattern("AWS_SECRET_KEY", _B40, _b40_replace, F_RUN, (), (), 40),
    Pattern("AUTH_HEADER", _AUTH_NAMED, _group("AUTH_HEADER"), F_KW, (), ("authori",)),
    Pattern("AUTH_HEADER", _AUTH_SCHEME, _auth_scheme_replace, F_KW, (), _AUTH_WORDS),
    Pattern("COOKIE", _COOKIE, _group("COOKIE"), F_KW, (), ("cookie",)),
    Pattern(KV_KIND, _KV, _kv_replace, F_COLON | F_EQ),
    Pattern(CLI_KIND, _CLI, _cli_replace, F_DASH, (" -", "\t-", "\n-")),
    Pattern("BLOB", _DATA_URI, _data_uri_replace, F_COLON, (), ("data:",)),
    Pattern("BLOB", _B64_RUN, _b64_replace, F_RUN, (), (), 64),
    Pattern("BLOB", _HEX_RUN, _hex_replace, F_RUN, (), (), 128),
    Pattern("USER", _HOME, _group("USER"), F_HOME),
    Pattern("PHONE", _PHONE_INTL, _whole("PHONE", _phone_check(9, 1000)), F_NUM, ("+",)),
    Pattern("NATIONAL_ID", _SSN_CTX, _group("NATIONAL_ID"), F_NUM, (), ("ssn", "social", "ss#")),
    Pattern("NATIONAL_ID", _NATIONAL_NUM, _national_num_replace, F_NUM, (), (), 11),
    Pattern("NATIONAL_ID", _NATIONAL_ALNUM, _national_alnum_replace, F_ID, (), (), 9),
    Pattern("NATIONAL_ID", _CODICE_FISCALE, _whole("NATIONAL_ID"), F_RUN, (), (), 16),
    Pattern("IBAN", _IBAN, _iban_replace, F_NUM, (), (), 15),
    Pattern("CARD", _CARD, _card_replace, F_NUM, (), (), 13),
    Pattern("EMAIL", _EMAIL, _whole("EMAIL", _email_ok), F_AT),
    Pattern("MAC_ADDRESS", _MAC, _whole("MAC_ADDRESS"), F_COLON | F_DASH, (), (), 17, _mac_gate),
    Pattern("MAC_ADDRESS", _MAC_DOTTED, _whole("MAC_ADDRESS", _mac_dotted_ok), F_ID, (".",), (), 14),
    Pattern("IPV6", _IPV6, _ipv6_replace, F_COLON, (), (), 6, _ipv6_gate),
    Pattern("IPV4", _IPV4, _ipv4_replace, F_DOTNUM),
    Pattern("PHONE", _PHONE_NANP, _whole("PHONE", _phone_check(10, 11)), F_NUM),
    Pattern("PHONE", _PHONE_AREA, _whole("PHONE", _phone_check(8, 13)), F_NUM, ("(",)),
    Pattern("PHONE", _PHONE_TRUNK, _whole("PHONE", _phone_check(9, 12, one_sep=True)), F_NUM, ("0",)),
    Pattern("PHONE", _PHONE_SPACED, _whole("PHONE", _phone_check(9, 1000)), F_NUM, (" ",)),
)


@lru_cache(maxsize=1024)
def patterns_for(f: int) -> tuple[Pattern, ...]:
    """The patterns (in order) that a text with feature bits ``f`` may need."""
    return tuple(p for p in PATTERNS if p.need & f)


_TRIGGER = re.compile(r"[\d@:=+\\/]")
_RUN16 = re.compile(r"[A-Za-z0-9_/+-]{16}")
_NUM9 = re.compile(r"\d(?:[ ()./-]{0,2}\d){8,}")
_DOTNUM = re.compile(r"\d\.\d")
_NUM6 = re.compile(r"\d(?:[ ()./-]{0,2}\d){5,}")
_ID6 = re.compile(r"\d{6}|\d\d \d\d \d\d")  # NINO, DNI: digits in a row or in spaced pairs
_KW_ALL = ("bearer", "basic", "digest", "token", "negotiate", "ntlm", "apikey", "authori", "cookie")


#: whole-string shapes that can hold nothing sensitive: ISO dates/times, short plain numbers
SAFE_SHAPE = re.compile(
    r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?(?:Z|[+-]\d\d:?\d\d)?)?"
    r"|\d\d:\d\d(?::\d\d)?|[+-]?\d{1,8}(?:\.\d{1,12})?(?:[eE][+-]?\d{1,3})?"
)


#: for ASCII text, byte tables that answer the regex questions below in one C pass each (sre
#: pays per start position; ``bytes.translate`` and ``in`` do not): _TRIGGER's characters kept,
#: digits kept, and _RUN16's characters as ``a``, everything else as a space
_NOT_TRIGGER = bytes(c for c in range(256) if chr(c) not in "0123456789@:=+\\/")
_NOT_DIGIT = bytes(c for c in range(256) if not 48 <= c <= 57)
_RUN_MAP = bytes(
    ord("a") if c < 128 and (chr(c).isalnum() or chr(c) in "_/+-") else ord(" ") for c in range(256)
)
_RUN16_BYTES = b"a" * 16


def features(s: str) -> int:
    """Feature bits of ``s``; 0 means no built-in pattern can match (the fast path)."""
    n = len(s)
    ascii_bytes = s.encode("ascii") if s.isascii() else None
    if ascii_bytes is not None:  # the same answers as the regexes, without a search per position
        trig = bool(ascii_bytes.translate(None, _NOT_TRIGGER))
    else:
        trig = _TRIGGER.search(s) is not None
    if not trig and n < 16:
        return 0
    if trig and n <= 40 and SAFE_SHAPE.fullmatch(s) is not None:
        return 0
    f = 0
    colon = ":" in s
    eq = "=" in s
    if n >= 16:
        if ascii_bytes is not None:
            if _RUN16_BYTES in ascii_bytes.translate(_RUN_MAP):
                f |= F_RUN
        elif _RUN16.search(s) is not None:
            f |= F_RUN
    if n >= 14 or ((colon or eq) and n >= 8):
        low = s.lower()
        for w in _KW_ALL:
            if w in low:
                f |= F_KW
                break
    if "-" in s and ("-----" in s or " -" in s or "\t-" in s or "\n-" in s or s.count("-") >= 5):
        f |= F_DASH  # private key armour, a command-line flag, a dash-separated MAC
    if ("/" in s or "\\" in s) and ("/home/" in s or "Users" in s or "/var/mail/" in s):
        f |= F_HOME
    if trig:
        if "@" in s:
            f |= F_AT
        if colon:
            f |= F_COLON
        if eq:
            f |= F_EQ
        if n >= 9:
            # six digits (separators allowed) start every national id and phone: fewer, no search
            if ascii_bytes is None or len(ascii_bytes.translate(None, _NOT_DIGIT)) >= 6:
                m = _NUM6.search(s)
                if m is not None:
                    if _NUM9.search(s, m.start()) is not None:
                        f |= F_NUM | F_ID
                    elif _ID6.search(s, m.start()) is not None:
                        f |= F_ID
            if not f & F_ID and n >= 14 and s.count(".") >= 2 and _MAC_DOTTED.search(s) is not None:
                f |= F_ID
        if n >= 7 and "." in s and _DOTNUM.search(s) is not None:
            f |= F_DOTNUM
    return f


# ---------------------------------------------------------------- key names

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

#: one word (after camelCase / separator split) → kind
_WORD_KIND: dict[str, str] = {}
for _kind, _words in {
    "PASSWORD": "password passwords passwd pwd passphrase pass pin pincode userpassword",
    "SECRET": "secret secrets clientsecret sig",
    "TOKEN": "token jwt bearer csrf xsrf otp totp accesstoken refreshtoken idtoken authtoken csrftoken xsrftoken",
    "API_KEY": "apikey apikeys xapikey accesskey",
    "AUTHORIZATION": "authorization auth proxyauthorization",
    "COOKIE": "cookie cookies setcookie",
    "SESSION": "session sessionid sid sessid",
    "CREDENTIAL": "credential credentials creds",
    "PRIVATE_KEY": "privatekey privkey",
    "NAME": "username firstname lastname surname fullname givenname familyname nickname displayname forename "
    "middlename maidenname",
    "EMAIL": "email emails emailaddress",
    "PHONE": "phone phones telephone tel mobile msisdn fax phonenumber cellphone",
    "ADDRESS": "address addresses street postcode zipcode",
    "USER_ID": "uid userid customerid accountid memberid",
    "IP": "ip ipv4 ipv6 ipaddr ipaddress",
    "DEVICE_ID": "deviceid udid imei idfa idfv gaid macaddress deviceuuid hwid imsi iccid",
    "NATIONAL_ID": "ssn passport nationalid taxid nino aadhaar cpf",
    "BIRTHDATE": "dob birthdate birthday dateofbirth",
    "CARD": "cvv cvc cardnumber creditcard",
    "BANK_ACCOUNT": "iban",
    "LOCATION": "latitude longitude geolocation",
}.items():
    for _w in _words.split():
        _WORD_KIND[_w] = _kind

#: (word, next word) → kind
_PAIR_KIND: dict[tuple[str, str], str] = {}
for (
    _first
) in "api access secret private signing encryption master account license subscription consumer ssh auth".split():
    _PAIR_KIND[(_first, "key")] = (
        "PRIVATE_KEY"
        if _first in ("private", "ssh")
        else ("SECRET" if _first in ("secret", "signing", "encryption", "master") else "API_KEY")
    )
for _first in (
    "user customer account member patient employee owner person subscriber contact profile buyer seller "
    "sender recipient author citizen voter student"
).split():
    _PAIR_KIND[(_first, "id")] = "USER_ID"
    _PAIR_KIND[(_first, "uuid")] = "USER_ID"
    _PAIR_KIND[(_first, "guid")] = "USER_ID"
    _PAIR_KIND[(_first, "number")] = "USER_ID"
for _first in (
    "first last full given family middle sur nick display user customer contact person sender recipient "
    "holder cardholder account real legal patient employee maiden billing shipping"
).split():
    _PAIR_KIND[(_first, "name")] = "NAME"
for _first in "device installation machine hardware android advertising install".split():
    _PAIR_KIND[(_first, "id")] = "DEVICE_ID"
for _first in "remote client peer source src real forwarded origin user".split():
    _PAIR_KIND[(_first, "ip")] = "IP"
    _PAIR_KIND[(_first, "addr")] = "IP"
_PAIR_KIND.update({
    ("mac", "address"): "DEVICE_ID", ("mac", "addr"): "DEVICE_ID", ("serial", "number"): "DEVICE_ID",
    ("credit", "card"): "CARD", ("debit", "card"): "CARD", ("card", "number"): "CARD", ("card", "num"): "CARD",
    ("security", "code"): "CARD", ("account", "number"): "BANK_ACCOUNT", ("routing", "number"): "BANK_ACCOUNT",
    ("sort", "code"): "BANK_ACCOUNT", ("tax", "id"): "NATIONAL_ID", ("national", "id"): "NATIONAL_ID",
    ("social", "security"): "NATIONAL_ID", ("birth", "date"): "BIRTHDATE", ("date", "of"): "BIRTHDATE",
    ("zip", "code"): "ADDRESS", ("post", "code"): "ADDRESS", ("postal", "code"): "ADDRESS",
    ("home", "address"): "ADDRESS", ("street", "address"): "ADDRESS", ("mailing", "address"): "ADDRESS",
    ("billing", "address"): "ADDRESS", ("shipping", "address"): "ADDRESS", ("forwarded", "for"): "IP",
    ("e", "mail"): "EMAIL", ("pass", "word"): "PASSWORD", ("api", "token"): "TOKEN", ("session", "token"): "TOKEN",
    ("home", "addr"): "ADDRESS", ("home", "location"): "ADDRESS", ("national", "insurance"): "NATIONAL_ID",
    ("codice", "fiscale"): "NATIONAL_ID", ("social", "insurance"): "NATIONAL_ID", ("id", "card"): "NATIONAL_ID",
})  # fmt: skip

#: keys that are personal only on their own (``{"user": "alice"}``; not ``user_agent``)
_WHOLE_KIND = {
    "user": "USER_ID", "login": "USER_ID", "owner": "USER_ID", "zip": "ADDRESS", "postal": "ADDRESS",
    "lat": "LOCATION", "lng": "LOCATION", "lon": "LOCATION", "addr": "ADDRESS", "mac": "DEVICE_ID",
    "key": None, "handle": "USERNAME", "residence": "ADDRESS", "hwid": "DEVICE_ID", "serial": "DEVICE_ID",
    "nino": "NATIONAL_ID", "cpf": "NATIONAL_ID", "aadhaar": "NATIONAL_ID", "dni": "NATIONAL_ID", "nif": "NATIONAL_ID",
    "nie": "NATIONAL_ID", "sin": "NATIONAL_ID", "bsn": "NATIONAL_ID", "pesel": "NATIONAL_ID", "imsi": "DEVICE_ID",
    "iccid": "DEVICE_ID", "meid": "DEVICE_ID",
}  # fmt: skip

#: a word after the sensitive one that turns the key into metadata (``password_min_length``)
_NEUTRAL = frozenset(
    "count counts length len size type types kind format formats limit limits max min policy policies required "
    "enabled disabled verified present provided field fields hint label pattern regex strength rule rules scope "
    "scopes expiry expires expired expiration ttl age status valid version versions header headers name names "
    "prefix suffix algorithm alg mode path file url endpoint timeout lifetime duration".split()
)
# a "name" after a sensitive word is metadata (token_name, ...) but "first_name" is a name: pair check first

#: substrings of a single compact word (``userPassword`` typed as ``userpassword``)
_SUBSTRINGS: tuple[tuple[str, str], ...] = (
    ("password", "PASSWORD"), ("passwd", "PASSWORD"), ("passphrase", "PASSWORD"), ("secret", "SECRET"),
    ("apikey", "API_KEY"), ("privatekey", "PRIVATE_KEY"), ("credential", "CREDENTIAL"),
    ("authorization", "AUTHORIZATION"),
    ("cookie", "COOKIE"), ("email", "EMAIL"), ("phonenumber", "PHONE"), ("firstname", "NAME"), ("lastname", "NAME"),
    ("fullname", "NAME"), ("username", "NAME"), ("ipaddress", "IP"), ("macaddress", "DEVICE_ID"),
)  # fmt: skip
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("token", "TOKEN"), ("sessionid", "SESSION"), ("userid", "USER_ID"), ("deviceid", "DEVICE_ID"),
    ("apikey", "API_KEY"),
)  # fmt: skip


def split_words(key: str) -> list[str]:
    """``X-Api-Key`` → ``['x', 'api', 'key']``; ``userID`` → ``['user', 'id']``."""
    return [w.lower() for w in _WORDS.findall(key)]


def normalize_key(key: str) -> str:
    """Lower case, separators dropped: how allow/deny lists and extra keys are compared."""
    return "".join(ch for ch in key.lower() if ch.isalnum())


def _word_kind(w: str) -> str | None:
    kind = _WORD_KIND.get(w)
    if kind is not None:
        return kind
    if len(w) > 5:
        for sub, k in _SUBSTRINGS:
            if sub in w:
                return k
        for suf, k in _SUFFIXES:
            if w.endswith(suf) and w != suf:
                return k
    return None


#: people a record is about: alone as a key (``{"recipient": ...}``) the value is a person; before an
#: attribute word (``recipient_name``, ``buyer-ref``, ``patient.email``) they make it personal
_ROLES = frozenset(
    "user customer account member patient employee owner person subscriber contact buyer seller "
    "sender recipient author citizen voter student holder cardholder attendee guest passenger applicant "
    "beneficiary payee payer addressee signer assignee reporter tenant borrower donor visitor shopper consumer "
    "caller candidate spouse kin traveler traveller participant respondent claimant insured "
    "policyholder resident occupant consignee shipper".split()
)
#: where a person lives or is reached: only with a contact attribute (``home_addr``, not ``delivery_id``)
_PLACES = frozenset("home billing shipping mailing delivery residential work personal private emergency".split())
_CONTACT_ATTR = frozenset("name names fullname email mail phone tel mobile cell address addr street location".split())
#: whole keys that name a person by role: the value is dropped (a dict under them is walked)
_ROLE_ALONE = frozenset(
    "recipient holder cardholder author attendee guest passenger applicant beneficiary payee payer addressee "
    "signer assignee tenant borrower donor visitor shopper claimant policyholder consignee customer patient sender "
    "employee subscriber contact person spouse kin".split()
)
#: attribute word after a role → kind
_ROLE_ATTR = {
    "name": "NAME", "names": "NAME", "fullname": "NAME", "id": "USER_ID", "uuid": "USER_ID", "guid": "USER_ID",
    "number": "USER_ID", "no": "USER_ID", "num": "USER_ID", "nr": "USER_ID", "ref": "USER_ID", "code": "USER_ID",
    "email": "EMAIL", "mail": "EMAIL", "phone": "PHONE", "tel": "PHONE", "mobile": "PHONE", "cell": "PHONE",
    "address": "ADDRESS", "addr": "ADDRESS", "street": "ADDRESS", "location": "ADDRESS", "residence": "ADDRESS",
    "login": "USERNAME", "handle": "USERNAME", "username": "USERNAME", "user": "USERNAME", "dob": "BIRTHDATE",
    "birthday": "BIRTHDATE", "ip": "IP",
}  # fmt: skip
#: words naming a device or an installation: with an id-like word they make a device id
_DEVICE_WORDS = frozenset("device hardware hw machine install installation advertising ad android vendor".split())
_DEVICE_ATTR = frozenset("id uuid guid fingerprint serial number no num identifier key token".split())
#: whole keys (or last words) that hold an account name
_USERNAME_LAST = frozenset("login handle username logon".split())
#: things that have handles and users of their own (``file_handle``, ``db_user`` is still a username)
_THINGS = frozenset("file window process socket event resource lock stream io thread task job session".split())
#: keys whose value is a person's name only when it looks like one (``{"name": "Ada Lovelace"}`` but
#: ``{"name": "my-repo"}``): decided on the value, see :func:`looks_like_person_name`
AMBIGUOUS_NAME_KEYS = frozenset("name names to cc bcc from".split())
_PERSON_NAME = re.compile(
    r"(?:(?:Dr|Mr|Mrs|Ms|Mx|Prof|Sir)\.? )?[A-Z\u00c0-\u00de][a-z\u00df-\u00ff'\u2019-]+"
    r"(?:,? (?:(?:van|von|de|da|del|der|di|le|la|bin|al)[ -])?[A-Z\u00c0-\u00de][a-z\u00df-\u00ff'\u2019.-]*){1,3}"
)


@lru_cache(maxsize=4096)
@lru_cache(maxsize=8192)
def ambiguous_name_key(key: str) -> bool:
    """``name``, ``Name``, ``NAME``, ``to`` ...: a key whose value is a person's name only if it looks like one."""
    return normalize_key(key) in AMBIGUOUS_NAME_KEYS


def looks_like_person_name(value: object) -> bool:
    """Two to four capitalised words of letters: how a person's name is written."""
    return isinstance(value, str) and len(value) <= 80 and _PERSON_NAME.fullmatch(value.strip()) is not None


def _role_kind(words: list[str]) -> str | None:
    """Second pass of :func:`key_kind`: roles, device words, usernames, licences, coordinates."""
    n = len(words)
    compact = "".join(words)
    if n == 1 and compact in _ROLE_ALONE:
        return "PERSON"
    last = words[-1]
    if last in _NEUTRAL and last not in ("name", "names"):
        return None
    for i in range(n - 1):
        w, nxt = words[i], words[i + 1]
        if w in _DEVICE_WORDS and nxt in _DEVICE_ATTR:
            return "DEVICE_ID"
        if (w in _ROLES and nxt in _ROLE_ATTR) or (w in _PLACES and nxt in _CONTACT_ATTR):
            return _ROLE_ATTR[nxt]
        if w in ("driver", "drivers", "driving") and nxt in ("license", "licence", "permit"):
            return "NATIONAL_ID"
        if w in ("screen", "login", "logon", "account", "sam") and nxt in ("name", "id"):
            return "USERNAME"
    if (last in _USERNAME_LAST or (n > 1 and last == "user")) and (n == 1 or words[-2] not in _THINGS):
        return "USERNAME"
    if last in ("serial", "hwid", "fingerprint") and (n == 1 or words[-2] in _DEVICE_WORDS or last != "fingerprint"):
        return "DEVICE_ID" if last != "fingerprint" else None
    if words[0] == "serial" and n > 1 and words[1] in ("no", "num", "nr", "number"):
        return "DEVICE_ID"
    for w in words:
        if w in ("lat", "lng", "lon", "latitude", "longitude", "geolocation", "coords", "coordinates"):
            return "LOCATION"
    if compact.endswith(("deviceuuid", "machineguid", "machineid", "hardwareid", "installid")):
        return "DEVICE_ID"
    return None


@lru_cache(maxsize=8192)
def key_kind(key: str) -> str | None:
    """The sensitive kind of a key name (``PASSWORD``, ``EMAIL``, ``NAME``, ``PERSON`` ...), or None.

    The key is split into lower-case words whatever its spelling (``customerName``,
    ``customer-name``, ``CUSTOMER_NAME``, ``customer.name``) and classified on the words: a
    sensitive word or pair (``password``, ``api key``, ``first name``), then a role followed by an
    attribute (``recipient name``, ``buyer ref``, ``patient email``), a device word followed by an
    id word (``device uuid``, ``hardware id``), a username word (``login``, ``handle``), a role on
    its own (``recipient``). A word such as ``count``, ``length`` or ``type`` after the sensitive
    part makes it metadata (``password_min_length``).
    """
    words = split_words(key)
    if not words:
        return None
    if len(words) == 1 and words[0] in _WHOLE_KIND:
        return _WHOLE_KIND[words[0]]
    n = len(words)
    for i, w in enumerate(words):
        kind = None
        end = i
        if i + 1 < n:
            kind = _PAIR_KIND.get((w, words[i + 1]))
            end = i + 1
        if kind is None:
            kind = _word_kind(w)
            end = i
        if kind is None:
            continue
        if any(x in _NEUTRAL for x in words[end + 1 :]):
            return None
        return kind
    return _role_kind(words)


def key_placeholder(kind: str) -> str:
    return f"[REDACTED:{kind}]"


#: every kind a key-name rule can give (counted as ``REDACTED:<KIND>``), for readers of the counters
KEY_KINDS: frozenset[str] = frozenset(
    k for k in (*_WORD_KIND.values(), *_PAIR_KIND.values(), *_WHOLE_KIND.values(), *(k for _, k in _SUBSTRINGS),
                *(k for _, k in _SUFFIXES), *_ROLE_ATTR.values(), "DEVICE_ID", "LOCATION", "NATIONAL_ID", "PERSON",
                "USERNAME")
    if k
)
