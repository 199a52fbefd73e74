"""The redaction engine: arguments, error text, resource URIs, headers and stack traces.

Every entry point returns the redacted value and a :class:`~collections.Counter` of the
redactions that fired, by kind (``EMAIL``, ``CARD``, ``REDACTED:PASSWORD``, ``BLOB``,
``TRUNCATED`` ...), never the values. Placeholders keep no fragment of the original.

Order of rules for an argument object (:meth:`Redactor.value`), at every depth:

1. ``allow_keys``: the value under the key is kept verbatim (whole subtree).
2. ``deny_keys``, ``extra_sensitive_keys`` and the built-in key names (:func:`patterns.key_kind`):
   the whole value becomes ``[REDACTED:<KIND>]`` (``None``, booleans and ``""`` are kept: they
   reveal nothing).
3. ``callback(path, value)`` on each leaf: a non-None return replaces the value (and is still
   scanned by the patterns below, so a callback can add redaction but never bypass it).
4. Strings: custom patterns, then the built-in value patterns (:data:`patterns.PATTERNS`); a
   string that is itself a JSON object or array is parsed and walked with these same rules.
   Integers: a Luhn-valid card number is replaced. Dict keys are scanned as text too.
5. Strings longer than ``max_string`` are cut after redaction, with ``…[+N chars]``.

Resource URIs (:meth:`Redactor.uri`) keep the scheme, the host (unless it is an IP address), the
port and the structural path words; they drop userinfo, query and fragment values, and any path
segment that names or identifies someone (see :meth:`Redactor.uri`).
"""

from __future__ import annotations

import json
import re
import sys
import traceback as _tb
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mcplens.privacy import new_counter
from mcplens.privacy import patterns as P

__all__ = ["RedactionRules", "Redactor", "redact_value", "redact_text"]


@dataclass
class RedactionRules:
    """Operator settings for the redactor. Key names match case-insensitively across separators."""

    max_string: int = 256
    extra_sensitive_keys: Collection[str] = ()
    allow_keys: Collection[str] = ()
    deny_keys: Collection[str] = ()
    custom_patterns: dict[str, str] = field(default_factory=dict)
    callback: Callable[[tuple[str, ...], Any], Any] | None = None
    max_depth: int = 32
    #: text longer than this is scanned only up to here (then truncated anyway)
    scan_limit: int = 65536


_ALLOW = "\x00allow"
_FAILED = "[REDACTION_FAILED]"
_SCALARS = (int, float)
_WHOLE_B64 = re.compile(r"\s*[A-Za-z0-9+/_-]+(?:\s+[A-Za-z0-9+/_-]+)*\s*={0,2}\s*")
_WHOLE_HEX = re.compile(r"\s*[0-9a-fA-F]+\s*")
_EXT = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_HEXID = re.compile(r"[0-9a-fA-F]{8,}")
_VERSIONISH = re.compile(r"[A-Za-z]{1,3}\d{1,2}")  # v1, api2, s3, ec2: structural, not an id
_DRIVE = re.compile(r"[A-Za-z]:")
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_HOME_MARKERS = frozenset(
    "home users user u profiles profile people person members member customers customer accounts account "
    "mail mailbox owners owner employees employee patients patient students student".split()
)
#: schemes whose authority is a real network host (kept unless it is an IP address)
_NETWORK_SCHEMES = frozenset(
    "http https ws wss ftp ftps sftp ssh git svn file postgres postgresql mysql mariadb mongodb mongodb+srv redis "
    "rediss amqp amqps s3 gs az abfs abfss hdfs smtp smtps imap imaps pop3 ldap ldaps tcp udp grpc grpcs kafka nats "
    "mqtt mqtts jdbc sqlserver mssql oracle cassandra clickhouse elasticsearch opensearch memcached".split()
)
#: header names whose value is always replaced, with the placeholder used (others via key_kind)
_HEADER_KIND = {
    "authorization": "[AUTH_HEADER]",
    "proxy-authorization": "[AUTH_HEADER]",
    "cookie": "[COOKIE]",
    "set-cookie": "[COOKIE]",
    "forwarded": P.key_placeholder("IP"),
    "x-hub-signature": P.key_placeholder("SECRET"),
    "x-hub-signature-256": P.key_placeholder("SECRET"),
    "x-slack-signature": P.key_placeholder("SECRET"),
    "stripe-signature": P.key_placeholder("SECRET"),
    "x-amz-security-token": P.key_placeholder("TOKEN"),
    "x-vault-token": P.key_placeholder("TOKEN"),
}


def _kind_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_").upper() or "KEY"


def _sub(p: P.Pattern, s: str, c: Counter[str], start: int = 0) -> str:
    """Apply one pattern from ``start`` (where its first candidate was found, its look-behind
    already checked); returns ``s`` itself when nothing was replaced."""
    hits = 0
    replace = p.replace

    def one(m: re.Match[str]) -> str:
        nonlocal hits
        r = replace(m)
        if r is None:
            return m.group(0)
        hits += 1
        return r

    new = p.regex.sub(one, s[start:] if start else s)
    if not hits:
        return s
    c[p.kind] += hits
    return s[:start] + new if start else new


def _scan_dynamic(p: P.Pattern, s: str, c: Counter[str]) -> str:
    """Key-classified matches (``--password x``): a match whose key is not sensitive consumes only
    its key, so a sensitive pair inside its value is still found."""
    pos = 0
    parts: list[str] = []
    last = 0
    search = p.regex.search
    while True:
        m = search(s, pos)
        if m is None:
            break
        r = p.replace(m)
        if r is None:
            pos = m.end("k")
            continue
        c["REDACTED:" + str(P.key_kind(m.group("k")))] += 1
        parts.append(s[last : m.start()])
        parts.append(r)
        last = pos = m.end()
    if not parts:
        return s
    parts.append(s[last:])
    return "".join(parts)


_SEP = re.compile(r"[=:]")
#: kinds whose unquoted value in text may hold spaces and commas: it runs to the end of the line,
#: a ``;``/``&``/``|``, a closing quote or bracket, or the next ``key=`` / ``key:``
_LINE_KINDS = frozenset(("ADDRESS", "NAME", "PERSON", "LOCATION"))
_VALUE_END = re.compile(r"[\r\n;&|\"'}\]]|\s[A-Za-z_][\w.-]{0,40}[\"']?\s?[=:]")
_KEYCH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _scan_kv(s: str, c: Counter[str]) -> str:
    """``key=value``, ``key: value``, ``"key": "value"`` in text, driven by the separators.

    For each ``=`` or ``:``, the word before it is classified (:func:`patterns.key_kind`, cached);
    only a sensitive key costs a regex match, which finds the value to replace.
    """
    parts: list[str] = []
    last = 0
    for m in _SEP.finditer(s):
        j = m.start()
        if j < last or j == 0 or (s[j] == ":" and s.startswith("//", j + 1)):
            continue
        if s[j - 1].isdigit() and s[j + 1 : j + 2].isdigit():
            continue  # 10:30, 2024-01-15T10:30, a=1 style arithmetic: a time, not a key
        i = j
        while i > last and s[i - 1] in " \t\"'":
            i -= 1
        k = i
        while i > last and s[i - 1] in _KEYCH:
            i -= 1
        while i < k and not (s[i].isalpha() or s[i] == "_"):
            i += 1
        if i == k:
            continue
        key = s[i:k]
        kind = P.key_kind(key)
        if kind is None and not P.ambiguous_name_key(key):
            continue
        mm = P._KV.match(s, i)
        if mm is None:
            continue
        end = mm.end()
        if kind is None:  # name: Ada Lovelace / name=build-7: the value decides
            value = next((v for v in mm.group("q1", "q2", "u") if v is not None), "")
            if not P.looks_like_person_name(value):
                continue
            kind = "NAME"
            r = s[i : mm.start("u")] + P.key_placeholder(kind) if mm.group("u") is not None else None
            if r is None:
                g = "q1" if mm.group("q1") is not None else "q2"
                r = s[i : mm.start(g)] + P.key_placeholder(kind) + s[mm.end(g) : end]
        else:
            r = P._kv_replace(mm)
            if r is None:
                continue
        if mm.group("u") is not None and kind in _LINE_KINDS:
            # an unquoted address or name runs to the end of its line or the next key: "12 Elm St, Springfield"
            stop = _VALUE_END.search(s, mm.end("u"))
            end = stop.start() if stop is not None else len(s)
            r = s[i : mm.start("u")] + P.key_placeholder(kind)
        c["REDACTED:" + kind] += 1
        parts.append(s[last:i])
        parts.append(r)
        last = end
    if not parts:
        return s
    parts.append(s[last:])
    return "".join(parts)


class Redactor:
    """Stateless apart from its rules and a key-name cache; safe to share between threads."""

    def __init__(self, rules: RedactionRules | None = None) -> None:
        self.rules = rules = rules or RedactionRules()
        self.max_string = max(16, int(rules.max_string))
        self._allow = {P.normalize_key(k) for k in rules.allow_keys}
        self._deny = {P.normalize_key(k): _kind_name(k) for k in rules.deny_keys}
        self._extra = {P.normalize_key(k): _kind_name(k) for k in rules.extra_sensitive_keys}
        self._custom = [(_kind_name(name), re.compile(rx)) for name, rx in rules.custom_patterns.items()]
        self._callback = rules.callback
        self._plain = self._callback is None and not self._custom  # leaves may take the fast path
        self._keys: dict[str, str | None] = {}
        self._clean_keys: set[str] = set()
        self._ambiguous_keys: dict[str, bool] = {}
        #: keys whose value no key rule touches and whose name is clean: the value's own scan decides
        self._plain_keys: set[str] = set()
        #: short leaf strings the scan returned unchanged with nothing fired (enum-like argument
        #: values, repeated queries: the same few come back call after call). Redaction is a pure
        #: function of the string and these rules, so one found here needs no second scan. Only
        #: strings with nothing to redact are remembered, never one that held anything.
        self._clean_leaves: set[str] = set()

    # ------------------------------------------------------------ keys

    def key_rule(self, key: str) -> str | None:
        """``None`` (no key rule), the allow marker, or the kind to redact the value as."""
        try:
            return self._keys[key]
        except KeyError:
            pass
        norm = P.normalize_key(key)
        if norm in self._allow:
            kind: str | None = _ALLOW
        elif norm in self._deny:
            kind = self._deny[norm]
        elif norm in self._extra:
            kind = self._extra[norm]
        else:
            kind = P.key_kind(key)
        if len(self._keys) < 16384:
            self._keys[key] = kind
        return kind

    def _ambiguous(self, key: str) -> bool:
        """:func:`patterns.ambiguous_name_key`, cached like the key rules (it normalises the key)."""
        try:
            return self._ambiguous_keys[key]
        except KeyError:
            pass
        found = P.ambiguous_name_key(key)
        if len(self._ambiguous_keys) < 16384:
            self._ambiguous_keys[key] = found
        return found

    # ------------------------------------------------------------ text

    def text(self, s: str) -> tuple[str, Counter[str]]:
        """Redact free text (an error message, exception text, a client info string)."""
        c: Counter[str] = new_counter()
        try:
            return self._text(s if isinstance(s, str) else str(s), c), c
        except Exception:  # noqa: BLE001 - never raise into capture, never pass text through unredacted
            return _FAILED, Counter({"REDACTION_FAILED": 1})

    def _scan(self, s: str, c: Counter[str], f: int = -1) -> str:
        for kind, rx in self._custom:
            s, n = rx.subn(P.ph(kind), s)
            if n:
                c[kind] += n
        if f < 0 or self._custom:
            f = P.features(s)
        if not f:
            return s
        low: str | None = None
        n = len(s)
        for p in P.patterns_for(f):
            if n < p.min_len or not p.need & f:
                continue
            if p.needles:
                for needle in p.needles:
                    if needle in s:
                        break
                else:
                    continue
            if p.low_needles:
                if low is None:
                    low = s.lower()
                for needle in p.low_needles:
                    if needle in low:
                        break
                else:
                    continue
            if p.gate is not None and not p.gate(s):
                continue
            kind = p.kind
            if kind == P.KV_KIND:
                new_s = _scan_kv(s, c)
            elif kind == P.CLI_KIND:
                new_s = _scan_dynamic(p, s, c)
            else:
                m = p.regex.search(s)
                if m is None:
                    continue
                new_s = _sub(p, s, c, m.start())
            if new_s is not s:
                s = new_s
                n = len(s)
                low = None
                if f & P.F_NUM and P._NUM6.search(s) is None:
                    f &= ~P.F_NUM  # the digits were the value just replaced: the numeric shapes are done
        return s

    def _text(self, s: str, c: Counter[str], f: int = -1) -> str:
        if not s:
            return s
        n = len(s)
        limit = self.rules.scan_limit
        if n > limit:
            blob = self._whole_blob(s)
            if blob is not None:
                c["BLOB"] += 1
                return blob
            cut = s.rfind(" ", limit - 1024, limit)
            window = s[: cut if cut > 0 else limit]
            out = self._scan(window, c)
            dropped = n - len(window)
            keep = min(self.max_string, len(out))
            c["TRUNCATED"] += 1
            return f"{out[:keep]}…[+{len(out) - keep + dropped} chars]"
        out = self._scan(s, c, f)
        if len(out) > self.max_string:
            c["TRUNCATED"] += 1
            return f"{out[: self.max_string]}…[+{len(out) - self.max_string} chars]"
        return out

    @staticmethod
    def _whole_blob(s: str) -> str | None:
        head = s[:64].lstrip().lower()
        if head.startswith("data:"):
            body = s.partition(",")[2]
            return P.blob_placeholder(len(body.rstrip().rstrip("=")) * 3 // 4 if ";base64" in head else len(body))
        if _WHOLE_HEX.fullmatch(s):
            return P.blob_placeholder(len("".join(s.split())) // 2)
        if _WHOLE_B64.fullmatch(s) and P.looks_random(s[:512].replace("\n", ""), 4.0):
            return P.blob_placeholder(len("".join(s.split()).rstrip("=")) * 3 // 4)
        return None

    # ------------------------------------------------------------ values

    def value(self, v: Any, path: tuple[str, ...] = ()) -> tuple[Any, Counter[str]]:
        """Redact an argument object (dicts, lists, strings, numbers), returning a new object."""
        c: Counter[str] = new_counter()
        try:
            return self._value(v, path, c, 0), c
        except Exception:  # noqa: BLE001 - never raise into capture, never pass a value through unredacted
            return _FAILED, Counter({"REDACTION_FAILED": 1})

    def _value(self, v: Any, path: tuple[str, ...], c: Counter[str], depth: int) -> Any:
        if v is None or v is True or v is False:
            return v
        if isinstance(v, str):
            if self._callback is not None:
                r = self._call(path, v, c)
                if not isinstance(r, str):
                    return self._value(r, path, c, depth + 1) if isinstance(r, (dict, list)) else r
                v = r
            return self._str(v, path, c, depth)
        if isinstance(v, dict):
            if depth >= self.rules.max_depth:
                c["DEPTH"] += 1
                return "[DEPTH]"
            out: dict[str, Any] = {}
            plain_keys = self._plain_keys
            for k, x in v.items():
                ks = k if isinstance(k, str) else str(k)
                if ks in plain_keys:  # no key rule, not a name key, nothing in it to redact: as below
                    nk = ks
                else:
                    rule = self.key_rule(ks)
                    if rule is _ALLOW or rule == _ALLOW:
                        out[ks] = x
                        continue
                    ambiguous = rule is None and self._ambiguous(ks)
                    if (rule == "USER_ID" or rule == "PERSON") and isinstance(x, (dict, list)):
                        rule = None  # {"user": {...}}, {"recipient": {...}}: walk it, its own keys decide
                    elif ambiguous and P.looks_like_person_name(x):
                        rule = "NAME"  # {"name": "Ada Lovelace"}, but {"name": "my-repo"} is kept
                    if rule is not None and x is not None and x is not True and x is not False and x != "":
                        c["REDACTED:" + rule] += 1
                        out[ks] = P.key_placeholder(rule)
                        continue
                    if ks in self._clean_keys or not ks:
                        nk = ks
                    else:
                        sub: Counter[str] = new_counter()
                        nk = self._text(ks, sub)
                        if sub:
                            c.update(sub)
                        elif len(self._clean_keys) < 16384:
                            self._clean_keys.add(ks)  # only keys with nothing to redact are remembered
                    if (
                        rule is None and not ambiguous and ks and ks in self._clean_keys
                        and self.key_rule(ks) is None and len(plain_keys) < 16384
                    ):
                        plain_keys.add(ks)
                if self._plain:
                    tx = type(x)
                    if tx is str:
                        if not x or x in self._clean_leaves:
                            out[nk] = x
                            continue
                        if len(x) <= self.max_string and x[0] not in "{[":
                            out[nk] = self._leaf(x, c)
                            continue
                    elif tx is int and -(10**11) < x < 10**11 or tx is float or x is None or tx is bool:
                        out[nk] = x
                        continue
                out[nk] = self._value(x, (*path, ks) if self._callback is not None else path, c, depth + 1)
            return out
        if isinstance(v, (list, tuple)):
            if depth >= self.rules.max_depth:
                c["DEPTH"] += 1
                return "[DEPTH]"
            if self._plain:
                out_list: list[Any] = []
                append = out_list.append
                max_string = self.max_string
                clean_leaves = self._clean_leaves
                for x in v:  # the same leaf fast path as a dict's values
                    if type(x) is str and x and len(x) <= max_string and x[0] not in "{[":
                        if x in clean_leaves:
                            append(x)
                            continue
                        append(self._leaf(x, c))
                    else:
                        append(self._value(x, path, c, depth + 1))
                return out_list
            if self._callback is None:
                return [self._value(x, path, c, depth + 1) for x in v]
            return [self._value(x, (*path, str(i)), c, depth + 1) for i, x in enumerate(v)]
        if isinstance(v, _SCALARS):
            if self._callback is not None:
                r = self._call(path, v, c)
                if r is not v:
                    return self._value(r, path, c, depth) if isinstance(r, str) else r
            if isinstance(v, int) and 10**11 <= abs(v) < 10**20 and P.is_card_number(str(abs(v))):
                c["CARD"] += 1
                return P.ph("CARD")
            return v
        if isinstance(v, (bytes, bytearray, memoryview)):
            c["BLOB"] += 1
            return P.blob_placeholder(len(bytes(v)))
        return self._str(str(v), path, c, depth)

    def _leaf(self, x: str, c: Counter[str]) -> str:
        """A short leaf string through the scan; remembered when it came back unchanged, clean."""
        f = P.features(x)
        if not f:  # no features: clean, kept as is
            out = x
        else:
            sub: Counter[str] = new_counter()
            out = self._text(x, sub, f)
            if sub:
                c.update(sub)
                return out
        if out == x and len(self._clean_leaves) < 8192:
            self._clean_leaves.add(x)
        return out

    def _call(self, path: tuple[str, ...], v: Any, c: Counter[str]) -> Any:
        assert self._callback is not None
        try:
            r = self._callback(path, v)
        except Exception:  # noqa: BLE001 - a faulty callback must not break capture: redact to be safe
            c["CALLBACK_ERROR"] += 1
            return "[REDACTED:CALLBACK_ERROR]"
        if r is None:
            return v
        if r is not v:
            c["CALLBACK"] += 1
        return r

    def _str(self, s: str, path: tuple[str, ...], c: Counter[str], depth: int) -> str:
        if len(s) >= 2 and s[0] in "{[" and s[-1] in "}]" and len(s) <= self.rules.scan_limit:
            try:
                parsed = json.loads(s)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, (dict, list)):
                sub: Counter[str] = new_counter()
                out = self._value(parsed, path, sub, depth + 1)
                if sub:
                    c.update(sub)
                    return self._truncate(json.dumps(out, ensure_ascii=False), c)
                return self._truncate(s, c)
        return self._text(s, c)

    def _truncate(self, s: str, c: Counter[str]) -> str:
        if len(s) > self.max_string:
            c["TRUNCATED"] += 1
            return f"{s[: self.max_string]}…[+{len(s) - self.max_string} chars]"
        return s

    # ------------------------------------------------------------ URIs

    def uri(self, u: str) -> tuple[str, Counter[str]]:
        """Redact a resource URI, keeping its scheme and structure.

        The rule, per part:

        * userinfo (``user:pass@``) → ``[URL_CREDENTIALS]``; a host that is an IP address →
          ``[IPV4]``/``[IPV6]`` (loopback kept); other hosts and ports are kept.
        * each path segment: a value pattern hit (email, token, card ...) → its placeholder; the
          segment after a personal container (``home``, ``Users``, ``users``, ``customers``,
          ``accounts``, ``people`` ...) or starting with ``~`` → ``[USER]``; numbers, UUIDs,
          hex runs of 8+, any segment holding a digit (but ``v1``, ``api2``, ``s3``), and random-looking segments of 16+
          characters → ``[ID]`` (a file extension is kept: ``[ID].pdf``); segments with spaces,
          non-ASCII letters or other punctuation → ``[SEGMENT]``; plain words are kept.
        * query and fragment: parameter names kept, every value → ``[VALUE]`` (counted under the
          kind detected in it, else ``REDACTED:<KIND>`` for a sensitive parameter name, else
          ``QUERY_VALUE``); a fragment without ``=`` is treated as a path segment.

        So ``file:///home/alice/notes.txt`` → ``file:///home/[USER]/notes.txt`` and
        ``https://api.example.com/v1/orders/12345?email=a@b.co`` →
        ``https://api.example.com/v1/orders/[ID]?email=[VALUE]``.
        """
        try:
            return self._uri(u)
        except Exception:  # noqa: BLE001
            return _FAILED, Counter({"REDACTION_FAILED": 1})

    def _uri(self, u: str) -> tuple[str, Counter[str]]:
        """The work of :meth:`uri`."""
        c: Counter[str] = new_counter()
        if not isinstance(u, str) or not u:
            return u, c
        if len(u) > self.rules.scan_limit or u[:64].lstrip().lower().startswith("data:"):
            c["BLOB"] += 1
            return P.blob_placeholder(len(u)), c
        try:
            parts = urlsplit(u.strip())
        except ValueError:
            c["INVALID_URI"] += 1
            return "[INVALID_URI]", c
        out = []
        if parts.scheme:
            out.append(parts.scheme + ":")
        if parts.netloc or u.strip()[len(parts.scheme) + 1 :].startswith("//"):
            out.append("//" + self._netloc(parts.netloc, parts.scheme.lower(), c))
        path = parts.path
        segs = path.split("/")
        red = []
        prev = ""
        for seg in segs:
            red.append(self._segment(seg, prev, c) if seg else seg)
            if seg:
                prev = seg
        out.append("/".join(red))
        if parts.query:
            out.append("?" + self._query(parts.query, c))
        if parts.fragment:
            frag = parts.fragment
            out.append("#" + (self._query(frag, c) if "=" in frag else self._segment(frag, "", c)))
        return "".join(out), c

    def _netloc(self, netloc: str, scheme: str, c: Counter[str]) -> str:
        userinfo, at, hostport = netloc.rpartition("@")
        prefix = ""
        if at:
            c["URL_CREDENTIALS"] += 1
            prefix = "[URL_CREDENTIALS]@"
        host, port = hostport, ""
        if hostport.startswith("["):
            end = hostport.find("]")
            host, port = hostport[: end + 1], hostport[end + 1 :]
        elif hostport.count(":") == 1:
            host, _, p = hostport.partition(":")
            port = ":" + p
        bare = host.strip("[]")
        if bare.startswith("~"):
            c["USER"] += 1
            host = "[USER]"
        elif bare and scheme and scheme not in _NETWORK_SCHEMES and not host.startswith("["):
            # an application scheme (user://alice/..., notes://42): the "host" is a name like any segment
            host = self._segment(bare, scheme, c)
        elif bare:
            red = self._text(bare, c)
            if red != bare:
                host = "[" + red + "]" if host.startswith("[") and not red.startswith("[") else red
        if port and not port[1:].isdigit():
            port = ":" + self._text(port[1:], c)
        return prefix + host + port

    def _query(self, q: str, c: Counter[str]) -> str:
        pairs = parse_qsl(q, keep_blank_values=True)
        if not pairs:
            return self._segment(q, "", c)
        out = []
        for k, v in pairs:
            kk = self._text(k, c)
            if v:
                sub: Counter[str] = new_counter()
                self._text(v, sub)
                rule = self.key_rule(k)
                if sub:
                    c.update(sub)
                elif rule is not None and rule != _ALLOW:
                    c["REDACTED:" + rule] += 1
                else:
                    c["QUERY_VALUE"] += 1
                out.append(f"{kk}=[VALUE]")
            else:
                out.append(f"{kk}=")
        return "&".join(out)

    def _segment(self, raw: str, prev: str, c: Counter[str]) -> str:
        seg = unquote(raw)
        sub: Counter[str] = new_counter()
        red = self._scan(seg, sub)
        if sub:
            c.update(sub)
            return red
        if seg.startswith("~") or prev.lower() in _HOME_MARKERS:
            c["USER"] += 1
            return "[USER]"
        m = _EXT.search(seg)
        stem, ext = (seg[: m.start()], m.group(0)) if m and m.start() > 0 else (seg, "")
        digits = sum(ch.isdigit() for ch in stem)
        if (
            stem.isdigit()
            or (digits and not _VERSIONISH.fullmatch(stem))
            or _UUID.fullmatch(stem)
            or (_HEXID.fullmatch(stem) and digits)
            or (len(stem) >= 16 and P.looks_random(stem, 3.5))
        ):
            c["ID"] += 1
            return "[ID]" + ext
        if _PLAIN.fullmatch(seg) or _DRIVE.fullmatch(seg):
            return raw
        c["SEGMENT"] += 1
        return "[SEGMENT]" + ext

    # ------------------------------------------------------------ headers

    def headers(self, h: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[dict[str, str], Counter[str]]:
        """Redact an HTTP header mapping: credential and identity headers by name, the rest as text."""
        try:
            return self._headers(h)
        except Exception:  # noqa: BLE001
            return {}, Counter({"REDACTION_FAILED": 1})

    def _headers(self, h: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[dict[str, str], Counter[str]]:
        c: Counter[str] = new_counter()
        items = h.items() if isinstance(h, Mapping) else h
        out: dict[str, str] = {}
        for name, value in items:
            name = str(name)
            low = name.lower()
            placeholder = _HEADER_KIND.get(low)
            rule = self.key_rule(name)
            if rule == _ALLOW:
                out[name] = value
                continue
            if placeholder is None and rule is not None:
                placeholder = P.key_placeholder(rule)
            if placeholder is not None:
                if value:
                    c[placeholder[1:-1]] += 1
                    out[name] = placeholder
                else:
                    out[name] = value
                continue
            out[name] = self._text(str(value), c)
        return out, c

    # ------------------------------------------------------------ tracebacks

    @staticmethod
    def traceback_frames(tb: Any, limit: int = 64) -> list[str]:
        """``module:line`` for each frame, innermost last; no host paths, no source, no locals.

        Accepts an exception, a traceback object, a ``StackSummary`` or a list of ``FrameSummary``.
        """
        if isinstance(tb, BaseException):
            tb = tb.__traceback__
        frames: list[str] = []
        if isinstance(tb, TracebackType):
            cur: TracebackType | None = tb
            while cur is not None:
                f = cur.tb_frame
                mod = f.f_globals.get("__name__")
                if not isinstance(mod, str) or mod == "__main__" or not mod:
                    mod = _module_from_path(f.f_code.co_filename)
                frames.append(f"{mod}:{cur.tb_lineno}")
                cur = cur.tb_next
        elif tb is not None:
            for fs in tb:
                if isinstance(fs, _tb.FrameSummary):
                    frames.append(f"{_module_from_path(fs.filename)}:{fs.lineno}")
                elif isinstance(fs, tuple) and len(fs) >= 2:
                    frames.append(f"{_module_from_path(str(fs[0]))}:{fs[1]}")
        return frames[-limit:]


_SITE = re.compile(r"[/\\](?:site|dist)-packages[/\\]")


def _module_from_path(filename: str) -> str:
    """A dotted module name from a file path, with every host directory dropped."""
    if not filename:
        return "?"
    if filename.startswith("<"):
        return filename if len(filename) < 80 else "<?>"
    f = filename.replace("\\", "/")
    m = _SITE.search(filename)
    rel = None
    if m:
        rel = f[m.end() :]
    else:
        best = ""
        for entry in sys.path:
            e = entry.replace("\\", "/").rstrip("/")
            if e and f.startswith(e + "/") and len(e) > len(best):
                best = e
        if best:
            rel = f[len(best) + 1 :]
    if rel is None:
        rel = f.rsplit("/", 1)[-1]
    if rel.endswith(".py"):
        rel = rel[:-3]
    if rel.endswith("/__init__"):
        rel = rel[: -len("/__init__")]
    return rel.replace("/", ".") or "?"


_default: Redactor | None = None


def _get_default() -> Redactor:
    global _default
    if _default is None:
        _default = Redactor()
    return _default


def redact_value(v: Any) -> tuple[Any, Counter[str]]:
    """:meth:`Redactor.value` with the default rules."""
    return _get_default().value(v)


def redact_text(s: str) -> tuple[str, Counter[str]]:
    """:meth:`Redactor.text` with the default rules."""
    return _get_default().text(s)
