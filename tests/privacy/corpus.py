"""Deterministic synthetic corpora for the redactor: secrets and personal data, and benign values.

Nothing here is a real credential or a real person: every value is generated from a fixed seed
with the right *format* (valid Luhn cards, valid IBAN check digits, real base64url JWTs ...).

``SECRETS``: :class:`Item` values with the kind the redactor must count, the sensitive part that
must vanish, an optional key name (for key-based kinds) and the places it is put in the tests.
``BENIGN``: values the redactor must leave alone (the over-redaction rate is measured on them).
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

ARGS, JSON_STRING, ERROR, URI, HEADER, CLIENT_INFO = "args", "json_string", "error", "uri", "header", "client_info"
ALL_TEXT = (ARGS, JSON_STRING, ERROR, URI, HEADER, CLIENT_INFO)
#: key-based kinds (a name, an address, a user id ...) are only recognisable next to their key, so they
#: go where the key travels with the value: under it in arguments, as key=value in an error message or
#: a query string, as a header name. A bare "Alice Johnson" as a client name is not detectable.
KEYED = (ARGS, JSON_STRING, ERROR, URI, HEADER)


@dataclass(frozen=True)
class Item:
    kind: str  # the counter key that must fire, e.g. "EMAIL" or "REDACTED:NAME"
    value: str | int  # what is placed
    secret: str  # the part that must not survive (no 8-char window of it may appear)
    places: tuple[str, ...] = ALL_TEXT
    key: str | None = None  # key-based kinds: the key the value sits under
    header: str | None = None  # header placement: the header name (default X-Debug-Context)


R = random.Random(20261123)
ALNUM = string.ascii_letters + string.digits
UPPER_NUM = string.ascii_uppercase + string.digits
B64 = string.ascii_letters + string.digits + "+/"
URLSAFE = string.ascii_letters + string.digits + "-_"


def rnd(alphabet: str, n: int, *, mixed: bool = False) -> str:
    while True:
        s = "".join(R.choice(alphabet) for _ in range(n))
        if not mixed or (any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s)):
            return s


def digits(n: int) -> str:
    return "".join(R.choice(string.digits) for _ in range(n))


# ------------------------------------------------------------------ validators-based generators


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + digits(length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def fmt_card(num: str, style: int) -> str:
    if style == 0:
        return num
    sep = " " if style == 1 else "-"
    if len(num) == 15:  # Amex 4-6-5
        return sep.join([num[:4], num[4:10], num[10:]])
    return sep.join(num[i : i + 4] for i in range(0, len(num), 4))


CARD_BRANDS = [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15),
               ("6011", 16), ("65", 16), ("3528", 16), ("36", 14), ("4", 19), ("62", 16)]  # fmt: skip


def iban(country: str, bban: str) -> str:
    moved = bban + country + "00"
    num = int("".join(str(int(c, 36)) for c in moved))
    check = 98 - num % 97
    return f"{country}{check:02d}{bban}"


def bban_for(country: str) -> str:
    letters = string.ascii_uppercase
    spec = {
        "DE": lambda: digits(18),
        "GB": lambda: rnd(letters, 4) + digits(14),
        "FR": lambda: digits(10) + rnd(UPPER_NUM, 11) + digits(2),
        "ES": lambda: digits(20),
        "IT": lambda: rnd(letters, 1) + digits(10) + rnd(UPPER_NUM, 12),
        "NL": lambda: rnd(letters, 4) + digits(10),
        "BE": lambda: digits(12),
        "CH": lambda: digits(17),
        "AT": lambda: digits(16),
        "PL": lambda: digits(24),
        "SE": lambda: digits(20),
        "IE": lambda: rnd(letters, 4) + digits(14),
    }
    return spec[country]()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt() -> str:
    header = {"alg": R.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    payload = {"sub": rnd(ALNUM, 12), "iat": 1700000000 + R.randrange(10**7), "scope": "read write"}
    sig = bytes(R.randrange(256) for _ in range(R.choice([32, 64])))
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()), b64url(sig)])


def private_key(label: str) -> str:
    body = base64.b64encode(bytes(R.randrange(256) for _ in range(R.choice([120, 300])))).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


FIRST = ["Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Fatima", "Gustavo", "Hiroshi", "Ingrid", "Jamal", "Katarzyna",
         "Luis", "Mei", "Nikolai", "Olivia", "Priya", "Quentin", "Rosa", "Sven", "Tamar"]  # fmt: skip
LAST = ["Johnson", "Rossi", "Nakamura", "Okafor", "Fernandez", "Lindqvist", "Kowalski", "Haddad", "Moreau", "Schmidt",
        "Petrov", "Santos", "Chen", "Williams", "Dubois", "Novak"]  # fmt: skip
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.co.uk", "uni.example.edu", "example.io"]


def person() -> tuple[str, str]:
    return R.choice(FIRST), R.choice(LAST)


def email() -> str:
    f, last = person()
    local = R.choice(
        [f"{f}.{last}", f"{f[0]}{last}", f"{f}_{last}{R.randrange(99)}", f"{f}+mcp", f"{last}.{f}.{R.randrange(9)}"]
    )
    return f"{local.lower()}@{R.choice(DOMAINS)}"


def nanp() -> tuple[str, str, str]:
    return str(R.randrange(2, 10)) + digits(2), str(R.randrange(2, 10)) + digits(2), digits(4)


def phone() -> str:
    a, b, c = nanp()
    styles = [
        lambda: f"+1 {a} {b} {c}",
        lambda: f"({a}) {b}-{c}",
        lambda: f"{a}-{b}-{c}",
        lambda: f"{a}.{b}.{c}",
        lambda: f"+1-{a}-{b}-{c}",
        lambda: f"+1{a}{b}{c}",
        lambda: f"+1 ({a}) {b}-{c}",
        lambda: f"+44 20 {digits(4)} {digits(4)}",
        lambda: f"020 {digits(4)} {digits(4)}",
        lambda: f"+44 7{digits(3)} {digits(6)}",
        lambda: f"07{digits(3)} {digits(6)}",
        lambda: f"+49 30 {digits(7)}",
        lambda: f"030 {digits(7)}",
        lambda: f"+49 151 {digits(8)}",
        lambda: "06 " + " ".join(digits(2) for _ in range(4)),
        lambda: "+33 6 " + " ".join(digits(2) for _ in range(4)),
        lambda: "01." + ".".join(digits(2) for _ in range(4)),
        lambda: f"+81 3-{digits(4)}-{digits(4)}",
        lambda: f"+91 9{digits(4)} {digits(5)}",
        lambda: f"+61 2 {digits(4)} {digits(4)}",
        lambda: f"+34 6{digits(2)} {digits(3)} {digits(3)}",
        lambda: f"+39 3{digits(2)} {digits(7)}",
        lambda: f"0{R.randrange(1, 10)}{digits(8)}",
    ]
    return styles[R.randrange(len(styles))]()


def ipv4() -> str:
    first = R.choice([8, 10, 23, 45, 52, 66, 81, 92, 104, 151, 172, 185, 192, 203, 212])
    return ".".join([str(first)] + [str(R.randrange(0, 256)) for _ in range(2)] + [str(R.randrange(1, 255))])


def ipv6() -> str:
    groups = [f"{R.randrange(0x2001, 0x2A10):x}"] + [f"{R.randrange(0, 0x10000):x}" for _ in range(7)]
    style = R.randrange(3)
    if style == 0:
        return ":".join(groups)
    if style == 1:
        return ":".join(groups[:3]) + "::" + ":".join(groups[6:])
    return "fe80::" + ":".join(groups[4:])


def mac() -> str:
    sep = R.choice([":", "-"])
    return sep.join(f"{R.randrange(256):02X}" for _ in range(6))


# ------------------------------------------------------------------ the secrets corpus


def _secrets() -> list[Item]:
    items: list[Item] = []

    def add(kind: str, value: str, secret: str | None = None, places: tuple[str, ...] = ALL_TEXT, **kw: str) -> None:
        items.append(Item(kind, value, secret if secret is not None else value, places, **kw))

    for i in range(14):
        prefix, length = CARD_BRANDS[i % len(CARD_BRANDS)]
        add("CARD", fmt_card(luhn_complete(prefix, length), i % 3))
    for country in ["DE", "GB", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "PL", "SE", "IE"]:
        value = iban(country, bban_for(country))
        if R.random() < 0.5:
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        add("IBAN", value)
    for _ in range(10):
        add("JWT", jwt())
    for _ in range(6):
        tok = rnd(URLSAFE + "._~", 40, mixed=True)
        add("AUTH_HEADER", f"Bearer {tok}", tok, header="Authorization")
    for _ in range(4):
        f, _last = person()
        cred = base64.b64encode(f"{f.lower()}:{rnd(ALNUM, 14)}".encode()).decode()
        add("AUTH_HEADER", f"Basic {cred}", cred, header="Authorization")
    for _ in range(8):
        add("AWS_ACCESS_KEY", R.choice(["AKIA", "ASIA"]) + rnd(UPPER_NUM, 16))
    for i in range(8):
        sk = rnd(B64, 40, mixed=True)
        add("AWS_SECRET_KEY", f"aws_secret_access_key = {sk}" if i % 2 else sk, sk)
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "ghp_"]:
        add("GITHUB_TOKEN", prefix + rnd(ALNUM, 36, mixed=True))
    for _ in range(2):
        add("GITHUB_TOKEN", "github_pat_" + rnd(ALNUM, 22, mixed=True) + "_" + rnd(ALNUM, 59, mixed=True))
    for _ in range(6):
        add("GITLAB_TOKEN", "glpat-" + rnd(URLSAFE, 20, mixed=True))
    for kind in ["xoxb", "xoxp", "xoxa", "xoxs", "xoxr", "xoxo"]:
        add("SLACK_TOKEN", f"{kind}-{digits(12)}-{digits(13)}-{rnd(ALNUM, 24, mixed=True)}")
    for _ in range(2):
        hook = (
            f"https://hooks.slack.com/services/T{rnd(UPPER_NUM, 8)}/B{rnd(UPPER_NUM, 8)}/{rnd(ALNUM, 24, mixed=True)}"
        )
        add("SLACK_TOKEN", hook, hook[len("https://hooks.slack.com/services/") :])
    for prefix in ["sk_live_", "rk_live_", "sk_test_", "pk_live_", "sk_live_", "rk_live_"]:
        add("STRIPE_KEY", prefix + rnd(ALNUM, R.choice([24, 34, 99]), mixed=True))
    for i in range(8):
        if i % 2:
            add("OPENAI_KEY", "sk-proj-" + rnd(URLSAFE, 100, mixed=True))
        else:
            add("OPENAI_KEY", "sk-" + rnd(ALNUM, 48, mixed=True))
    for _ in range(6):
        add("ANTHROPIC_KEY", "sk-ant-api03-" + rnd(URLSAFE, 93, mixed=True) + "AA")
    for _ in range(6):
        add("GOOGLE_API_KEY", "AIza" + rnd(URLSAFE, 35, mixed=True))
    for label in ["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY",
                  "DSA PRIVATE KEY"]:  # fmt: skip
        pk = private_key(label)
        add("PRIVATE_KEY", pk, pk.split("\n", 1)[1], places=(ARGS, JSON_STRING, ERROR, CLIENT_INFO))
    for scheme, host in [("postgres", "db-3.svc.internal:5432/app"), ("postgresql", "10.2.3.4/prod"),
                         ("mysql", "mysql.svc.internal:3306/shop"), ("mongodb+srv", "cluster0.mongo.internal/admin"),
                         ("redis", "cache.svc.internal:6379/0"), ("amqp", "mq.svc.internal:5672/vhost"),
                         ("https", "git.svc.internal/org/repo.git"), ("ftp", "files.svc.internal/inbox")]:  # fmt: skip
        f, _last = person()
        userinfo = f"{f.lower()}_{rnd(string.ascii_lowercase, 3)}:{rnd(ALNUM, 16, mixed=True)}"
        add(
            "URL_CREDENTIALS", f"{scheme}://{userinfo}@{host}", userinfo, places=(ARGS, JSON_STRING, ERROR, URI, HEADER)
        )
    for i in range(8):
        sess = rnd(ALNUM, 32, mixed=True)
        csrf = rnd(ALNUM, 24, mixed=True)
        header = "Set-Cookie" if i % 4 == 3 else "Cookie"
        pairs = f"sessionid={sess}; csrftoken={csrf}"
        if header == "Set-Cookie":
            pairs = f"sid={sess}; Path=/; HttpOnly; Secure"
            add("COOKIE", f"Set-Cookie: {pairs}", sess, header=header)
        else:
            add("COOKIE", f"Cookie: {pairs}", pairs, header=header)
    for _ in range(14):
        add("EMAIL", email())
    for _ in range(23):
        add("PHONE", phone())
    for _ in range(10):
        add("IPV4", ipv4())
    for _ in range(8):
        add("IPV6", ipv6())
    for _ in range(6):
        add("MAC_ADDRESS", mac())

    # key-based personal data: the value sits under a telling key
    keyed: list[tuple[str, str, str | int]] = []
    for key in ["first_name", "lastName", "full_name", "displayName", "customer_name", "userName", "given-name",
                "FullName"]:  # fmt: skip
        first, last = person()
        keyed.append(("NAME", key, f"{first} {last}"))
    streets = ["Maple Avenue", "Rue de Rivoli", "Hauptstrasse", "Calle Mayor", "Elm Street", "Via Roma"]
    for key in ["address", "street_address", "homeAddress", "billing_address", "shippingAddress", "mailing-address"]:
        keyed.append(("ADDRESS", key, f"{R.randrange(1, 999)} {R.choice(streets)}, Springfield {digits(5)}"))
    for key in ["postal_code", "zipCode"]:
        keyed.append(("ADDRESS", key, digits(5) + "-" + digits(4)))
    for key in ["user_id", "userId", "customer_id", "accountId", "uid", "member-id", "X-User-Id"]:
        keyed.append(("USER_ID", key, R.choice(["usr_", "cus_", "acct_", ""]) + rnd(ALNUM, 14, mixed=True)))
    for key in ["user_id", "customerId"]:
        keyed.append(("USER_ID", key, int("9" + digits(9))))
    for key in ["device_id", "deviceId", "imei", "idfa", "android_id", "installation_id"]:
        value = {
            "imei": digits(15),
            "android_id": rnd("0123456789abcdef", 16),
        }.get(key, "-".join(rnd("0123456789ABCDEF", n) for n in (8, 4, 4, 4, 12)))
        keyed.append(("DEVICE_ID", key, value))
    for key in ["password", "db_password", "userPassword", "passwd", "client_secret", "apiKey", "x-api-key",
                "refresh_token", "session_id", "credentials"]:  # fmt: skip
        kind = {"client_secret": "SECRET", "apiKey": "API_KEY", "x-api-key": "API_KEY", "refresh_token": "TOKEN",
                "session_id": "SESSION", "credentials": "CREDENTIAL"}.get(key, "PASSWORD")  # fmt: skip
        keyed.append((kind, key, rnd(ALNUM + "!#%", 18, mixed=True)))
    for key in ["date_of_birth", "birthDate", "dob"]:
        keyed.append(("BIRTHDATE", key, f"19{R.randrange(50, 99)}-{R.randrange(1, 13):02d}-{R.randrange(1, 29):02d}"))
    for key in ["ssn", "passport_number"]:
        keyed.append(("NATIONAL_ID", key, f"{digits(3)}-{digits(2)}-{digits(4)}"))
    for key in ["ip_address", "client_ip", "remoteAddr"]:
        keyed.append(("IP", key, ipv4()))
    for key in ["phone_number", "mobile", "telephone"]:
        keyed.append(("PHONE", key, phone()))
    for key in ["email", "email_address", "contactEmail"]:
        keyed.append(("EMAIL", key, email()))
    for kind, key, value in keyed:
        items.append(Item("REDACTED:" + kind, value, str(value), KEYED, key=key))
    return items


SECRETS: list[Item] = _secrets()


# ------------------------------------------------------------------ the benign corpus


#: (kind, index just past its last value) for each section of BENIGN, and then of BENIGN_WIDE
BENIGN_SECTIONS: list[tuple[str, int]] = []


def _section(out: list, kind: str) -> None:
    BENIGN_SECTIONS.append((kind, len(out)))


def benign_by_kind(values: list) -> dict[str, list]:
    """The benign values grouped by the kind of the section they were generated in."""
    groups: dict[str, list] = {}
    start = 0
    for kind, end in BENIGN_SECTIONS:
        groups.setdefault(kind, []).extend(values[start:end])
        start = end
    return groups


def _benign() -> list[str | int | float | bool | None]:
    out: list[str | int | float | bool | None] = []
    out += [
        "def add(a, b):\n    return a + b",
        "for (let i = 0; i < n; i++) { sum += arr[i]; }",
        "x = np.linspace(0, 10, 100)",
        "import os; print(os.getcwd())",
        "const url = `${base}/api/v2/items`;",
        "std::vector<int> v{1, 2, 3};",
        "evens = numbers[::2]",
        'if err != nil { return fmt.Errorf("open: %w", err) }',
        "git commit -m 'fix: handle empty input'",
        "docker run -p 8080:80 nginx:1.25",
        "kubectl get pods -n kube-system -o wide",
        "pip install requests==2.31.0",
        "npm install --save-dev typescript@5.3.3",
        "SELECT COUNT(*) FROM events WHERE status = 'ok';",
        "grep -rn 'TODO' src/ | wc -l",
        "async def fetch(session, url):\n    async with session.get(url) as r:\n        return await r.text()",
        "class Point:\n    x: float\n    y: float",
        "return sorted(items, key=lambda it: it.priority)",
        "CREATE INDEX idx_orders_created ON orders (created_at);",
        'fn main() { println!("hello"); }',
        "assert len(result) == 3",
        "while (queue.length > 0) process(queue.shift());",
        "ls -la /var/log/nginx",
        "make test && make lint",
        "export PATH=$HOME/.local/bin:$PATH",
        "UPDATE inventory SET qty = qty - 1 WHERE sku = 'SKU-AB-1234-XL';",
    ]
    tables = ["orders", "invoices", "products", "events", "shipments", "tickets", "sessions_log", "metrics"]
    cols = ["id", "total", "created_at", "status", "region", "amount", "sku", "updated_at"]
    _section(out, "code")
    for _ in range(20):
        t, c1, c2 = R.choice(tables), R.choice(cols), R.choice(cols)
        out.append(
            R.choice(
                [
                    f"SELECT {c1}, {c2} FROM {t} WHERE {c1} > {R.randrange(1000)} "
                    f"ORDER BY {c2} DESC LIMIT {R.randrange(5, 200)}",
                    f"SELECT {c1}, SUM({c2}) FROM {t} GROUP BY {c1} HAVING SUM({c2}) > {R.randrange(10**6)}",
                    f"SELECT * FROM {t} WHERE created_at BETWEEN '2024-0{R.randrange(1, 10)}-01' AND '2024-12-31'",
                    f"DELETE FROM {t} WHERE {c1} IS NULL",
                    f"INSERT INTO {t} ({c1}, {c2}) VALUES ({R.randrange(999)}, 'pending')",
                ]
            )
        )
    _section(out, "sql")
    out += [
        "src/components/Button.tsx", "docs/getting-started.md", "README.md", "/var/log/nginx/access.log",
        "C:\\Program Files\\App\\config.ini", "report_final_v2.pdf", "data/2024/q1/sales.csv", "images/logo@2x.png",
        "tests/test_api.py", "Makefile", "package-lock.json", "notes/meeting-agenda.txt", "build/output/app.min.js",
        "assets/fonts/Inter-Regular.woff2", "config/settings.production.yaml", "scripts/deploy.sh",
        "migrations/0042_add_index.sql", "~/.config/app/config.toml", "/etc/hosts", "archive-2023-12.tar.gz",
    ]  # fmt: skip
    _section(out, "file names and paths")
    out += [
        "42", "3.14159", "1e-9", "1,234,567", "-273.15", "6.022e23", "100%", "0.0001", "65535", "1699999999",
        "1732400000123", "9007199254740991", "$1,299.00", "€45,50", "12.5%", "0x7fffffff", "255", "1024 MB",
        "48.8566, 2.3522", "99.95th percentile",
    ]  # fmt: skip
    _section(out, "numbers in text")
    out += [42, 0, -1, 3.5, 1e100, 1732400000123, 9007199254740991, 2**31 - 1, 1234567890123, True, False, None]
    _section(out, "numbers")
    out += [
        "2024-01-15", "2024-01-15T10:30:00Z", "2024-01-15T10:30:00.123456+02:00", "15/01/2024", "01.02.2024 12:30",
        "Jan 15, 2024", "Monday 3pm", "12:30:45", "2024-W03", "P1DT2H30M", "2023-11-05 08:15:00 UTC", "Q3 2024",
        "1999-12-31T23:59:59-05:00", "Thu, 21 Nov 2024 10:00:00 GMT", "2024-02-29",
    ]  # fmt: skip
    _section(out, "dates and times")
    for _ in range(12):
        out.append(
            R.choice(
                [
                    f"ORD-2024-{R.randrange(10**6):06d}",
                    f"INV-{R.randrange(10**5):05d}",
                    f"TICKET-{R.randrange(10**4)}",
                    f"PR #{R.randrange(1, 9999)}",
                    f"JIRA-{R.randrange(100, 9999)}",
                    f"SKU-{rnd(string.ascii_uppercase, 2)}-{R.randrange(1000, 9999)}-XL",
                ]
            )
        )
    _section(out, "record ids")
    out += ["01HZX3KQ8M2N4P6R8T0V2W4Y6A", "case 000123", "batch 7 of 12", "build #20241115.3", "run-2024-11-15-0930"]
    _section(out, "record ids")
    out += [
        "1.2.3", "v2.0.0-beta.1", "3.11.7", "10.0.19045.3803", "120.0.6099.109", "0.1.0", "2.14.3", "v1.25.4",
        "1.0.0-rc.2+build.5", ">=2.31,<3",
    ]  # fmt: skip
    _section(out, "versions")
    out += ["#ff00aa", "#FFF", "rgb(255, 0, 128)", "#1e90ff", "hsl(210, 50%, 40%)", "#00000080", "#c0ffee", "#BADA55"]
    _section(out, "colours")
    out += [
        "a1b2c3d", "3f9e2b1c8d", "9fceb02", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "e83c5163316f89bfbde7d9ab23ca2e25604af290",
        "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "HEAD~3", "main..feature/x",
    ]  # fmt: skip
    _section(out, "hashes and commits")
    out += [
        "x^2 + y^2 = z^2", "E = mc^2", "∫_0^1 x dx = 1/2", "2 + 2 = 4", "sqrt(16) = 4", "f(x) = 3x + 7",
        "a = 5; b = 10", "P(A|B) = P(B|A)P(A)/P(B)", "1/3 ≈ 0.333", "n! = n × (n-1)!",
    ]  # fmt: skip
    _section(out, "formulas")
    out += [
        '{"name": "widget", "price": 9.99, "tags": ["a", "b"]}', '{"status": "ok", "count": 42}', "[1, 2, 3]",
        '{"query": "weather in Paris", "units": "metric"}', '{"page": 2, "per_page": 50, "sort": "-created_at"}',
        '{"tool": "search", "arguments": {"q": "mcp servers", "limit": 10}}', '{"ok": true}', "[]", "{}",
        '{"max_tokens": 1024, "temperature": 0.2}', '{"city": "Lisbon", "days": 3}', '{"path": "docs/index.md"}',
    ]  # fmt: skip
    _section(out, "json")
    out += [
        "https://docs.python.org/3/library/re.html", "https://github.com/modelcontextprotocol/python-sdk/issues/123",
        "https://example.com/search?q=mcp+server&page=2", "http://localhost:8080/health",
        "https://en.wikipedia.org/wiki/Luhn_algorithm", "wss://stream.example.com/v1/events",
        "s3://my-bucket/data/2024/01/file.parquet", "https://api.example.com/v1/chat/completions",
        "https://pypi.org/project/requests/2.31.0/", "file:///tmp/build/output.log", "http://127.0.0.1:8000/mcp",
        "https://example.com/blog/2024/11/introducing-mcp", "ftp://ftp.example.org/pub/README",
        "https://cdn.example.com/assets/app.3f9e2b1c.js", "https://status.example.com/#incidents",
    ]  # fmt: skip
    _section(out, "urls")
    out += [
        "Find all open issues assigned to the platform team.",
        "Summarise the quarterly report in three bullet points.",
        "What is the weather like in Paris this weekend?",
        "The deployment finished in 4 minutes and 12 seconds.",
        "Rotate the API credentials every 90 days.",
        "Please reset your password using the link we sent.",
        "Tokens expire after 3600 seconds.",
        "The cache hit rate improved from 71% to 94% after the change.",
        "Translate 'good morning' into Portuguese.",
        "List the files changed in the last commit.",
        "Create a bar chart of monthly revenue for 2023.",
        "The meeting moved to Thursday at 10:30.",
        "Our SLO is 99.9% availability over 30 days.",
        "Convert 5 miles to kilometres.",
        "Draft a polite reply declining the invitation.",
        "The build failed because a test timed out.",
        "Compare the latency of versions 1.4 and 1.5.",
        "Use basic auth only on the internal network.",
        "Bearer tokens must be sent over HTTPS.",
        "The session ended after 15 minutes of inactivity.",
        "Room 101 is booked from 9 to 11.",
        "Gate B12 closes 20 minutes before departure.",
        "ISBN 978-3-16-148410-0 is the sample in the standard.",
        "Order 66 shipped on 2024-03-02 with 3 items.",
        "Error: file not found",
        "Error: connection refused by db:5432",
        "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
        "KeyError: 'customer'",
        "HTTP 404 Not Found",
        "timeout after 30s while reading from upstream",
        "ValueError: expected 3 columns, got 4",
        "Retrying in 2.5s (attempt 3/5)",
        "disk usage at 87% on /dev/sda1",
        "processed 12,345 rows in 1.8s",
        "The quick brown fox jumps over the lazy dog.",
        "Schedule the backup for 02:00 every night.",
        "Increase the pool size from 10 to 20 connections.",
        "Temperature today: 21°C, humidity: 40%.",
        "Chapter 3: Designing for failure",
        "Step 2 of 5: configure the webhook endpoint",
        "Use the token bucket algorithm for rate limiting.",
        "Cookies are disabled in this browser profile.",
        "Ping the on-call engineer if p99 latency exceeds 5 s.",
        "Version 2.0 removes the deprecated endpoints.",
        "The invoice total is 1,250.00 EUR including VAT.",
        # borderline: words that look like keys, numbers that look like phones or cards
        "Invalid password: too short",
        "token_type=Bearer; expires_in=3600",
        "Call the function with name=widget and size=3",
        "Tracking number 1Z999AA10123456784",
        "Build 20241115093012 finished",
        "Port range 49152-65535 is ephemeral",
        "Order total: 123456789 cents",
        "see RFC 7231 section 6.5.1",
        "matrix [[1, 2], [3, 4]]",
        "user agent: Mozilla/5.0 (X11; Linux x86_64)",
    ]
    _section(out, "prose and messages")
    return out


BENIGN = _benign()


# ------------------------------------------------------------------ the wide corpus (issue 10)
#
# Generated after SECRETS and BENIGN from the same seeded generator, so those two stay as they
# were. Every item has a *label* (its kind, >= 40 of them) and, for data only recognisable next
# to its key (a name, a street address, a username, a device id), the key it travels with; the
# key spellings vary on purpose (camelCase, kebab, dotted, UPPER, prefixed, compact).


@dataclass(frozen=True)
class Leak:
    label: str  # the kind, e.g. "phone-de" or "ssn-bare"
    value: str  # what is sent
    key: str | None = None  # None: recognisable by its shape anywhere; else only beside this key
    secret: str = ""  # the part that must vanish (default: the whole value)

    @property
    def must_vanish(self) -> str:
        return self.secret or self.value


def _ssn_parts() -> tuple[str, str, str]:
    while True:
        area = R.randrange(1, 900)
        if area != 666:
            return f"{area:03d}", f"{R.randrange(1, 100):02d}", f"{R.randrange(1, 10000):04d}"


def _nino() -> str:
    first = R.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = R.choice("ABCEGHJKLMNPRSTWXYZ")
    if first + second in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
        return _nino()
    return first + second + digits(6) + R.choice("ABCD")


def _cpf() -> str:
    d = [R.randrange(10) for _ in range(9)]
    for n in (10, 11):
        s = sum(x * (n - i) for i, x in enumerate(d))
        d.append(s * 10 % 11 % 10)
    s = "".join(map(str, d))
    return f"{s[:3]}.{s[3:6]}.{s[6:9]}-{s[9:]}"


_VD = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
       [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
       [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
       [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]  # fmt: skip
_VP = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
       [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
       [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]  # fmt: skip
_VINV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def _aadhaar() -> str:
    body = str(R.randrange(2, 10)) + digits(10)
    c = 0
    for i, ch in enumerate(reversed(body)):
        c = _VD[c][_VP[(i + 1) % 8][int(ch)]]
    s = body + str(_VINV[c])
    return f"{s[:4]} {s[4:8]} {s[8:]}"


def _dni() -> str:
    n = R.randrange(10**7, 10**8)
    return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


def _codice_fiscale() -> str:
    up = string.ascii_uppercase
    return (rnd(up, 6) + digits(2) + R.choice("ABCDEHLMPRST") + f"{R.randrange(1, 72):02d}"
            + R.choice(up) + digits(3) + R.choice(up))


def _sin() -> str:
    s = luhn_complete(str(R.choice([1, 2, 3, 4, 5, 6, 7, 9])), 9)
    sep = R.choice([" ", "-"])
    return f"{s[:3]}{sep}{s[3:6]}{sep}{s[6:]}"


PHONE_PLANS: dict[str, list] = {
    "us": [lambda: "({}) {}-{}".format(*nanp()), lambda: "{}-{}-{}".format(*nanp()),
           lambda: "+1 {} {} {}".format(*nanp()), lambda: "{}.{}.{}".format(*nanp()),
           lambda: "1-{}-{}-{}".format(*nanp()), lambda: "+1 ({}) {}-{}".format(*nanp())],
    "uk": [lambda: f"+44 20 {digits(4)} {digits(4)}", lambda: f"020 {digits(4)} {digits(4)}",
           lambda: f"07{digits(3)} {digits(6)}", lambda: f"+44 7{digits(3)} {digits(6)}",
           lambda: f"0161 {digits(3)} {digits(4)}", lambda: f"+44 (0)113 {digits(3)} {digits(4)}"],
    "de": [lambda: f"+49 30 {digits(8)}", lambda: f"030 {digits(8)}", lambda: f"0151 {digits(8)}",
           lambda: f"+49 (0)89 {digits(7)}", lambda: f"0221/{digits(7)}", lambda: f"+49 170 {digits(7)}"],
    "fr": [lambda: "06 " + " ".join(digits(2) for _ in range(4)),
           lambda: "+33 6 " + " ".join(digits(2) for _ in range(4)),
           lambda: "01." + ".".join(digits(2) for _ in range(4)),
           lambda: "+33 (0)1 " + " ".join(digits(2) for _ in range(4))],
    "in": [lambda: f"+91 9{digits(4)} {digits(5)}", lambda: f"+91-7{digits(9)}", lambda: f"09{digits(4)} {digits(5)}",
           lambda: f"8{digits(4)} {digits(5)}"],
    "br": [lambda: f"+55 11 9{digits(4)}-{digits(4)}", lambda: f"(11) 9{digits(4)}-{digits(4)}",
           lambda: f"(21) {R.randrange(2, 6)}{digits(3)}-{digits(4)}", lambda: f"+55 (21) 9{digits(4)}-{digits(4)}"],
    "jp": [lambda: f"+81 90-{digits(4)}-{digits(4)}", lambda: f"090-{digits(4)}-{digits(4)}",
           lambda: f"03-{digits(4)}-{digits(4)}", lambda: f"+81 3 {digits(4)} {digits(4)}"],
    "au": [lambda: f"+61 4{digits(2)} {digits(3)} {digits(3)}", lambda: f"04{digits(2)} {digits(3)} {digits(3)}",
           lambda: f"(02) {digits(4)} {digits(4)}", lambda: f"+61 2 {digits(4)} {digits(4)}"],
    "es": [lambda: f"+34 6{digits(2)} {digits(3)} {digits(3)}",
           lambda: f"6{digits(2)} {digits(2)} {digits(2)} {digits(2)}",
           lambda: f"91 {digits(3)} {digits(2)} {digits(2)}"],
    "it": [lambda: f"+39 3{digits(2)} {digits(7)}", lambda: f"06 {digits(4)} {digits(4)}",
           lambda: f"3{digits(2)} {digits(3)} {digits(4)}"],
    "nl": [lambda: f"+31 6 {digits(8)}", lambda: f"06-{digits(8)}", lambda: f"020 {digits(3)} {digits(4)}"],
    "mx": [lambda: f"+52 55 {digits(4)} {digits(4)}", lambda: f"+52 1 33 {digits(4)} {digits(4)}"],
}  # fmt: skip

_PERSON_KEYS = ["name", "fullName", "recipient", "customer_name", "display-name", "CONTACT_NAME", "patient.name",
                "recipientName", "holder", "sender_name", "billing.name", "guestFullName", "author",
                "attendee-name", "beneficiary", "payee_name", "employeeName", "owner_full_name", "cardholder"]
_USERNAME_KEYS = ["username", "login", "userName", "user-login", "LOGIN", "handle", "screen_name", "account_name",
                  "loginName", "user.login", "sAMAccountName", "github_user"]
_USER_ID_KEYS = ["user_id", "userID", "customerId", "member-uuid", "subscriber_id", "patientId", "account.id",
                 "CUSTOMER_NUMBER", "client_user_id", "ownerId", "buyer-ref", "employee_no"]
_DEVICE_KEYS = ["deviceID", "device-uuid", "hardware_id", "machine_id", "serialNumber", "imei", "udid",
                "advertising_id", "device.uuid", "installId", "hwid", "android_id", "MACHINE_GUID", "idfa",
                "deviceFingerprint", "serial_no"]
_ADDRESS_KEYS = ["street", "address", "home_address", "street-address", "billingAddress", "addressLine1",
                 "address_line_2", "shipping.street", "HOME_ADDR", "residence", "mailingAddress", "deliveryAddress"]
_STREETS = ["Maple Avenue", "Rue de Rivoli", "Hauptstrasse", "Calle Mayor", "Elm Street", "Via Roma", "Kings Road",
            "Avenida Paulista", "Bahnhofstrasse", "Queen Street West"]
_USERNAMES = ["kowalski.k", "jdoe_1987", "mei.chen88", "rosa-santos", "hnakamura", "tamar_haddad", "svenlind",
              "priya.okafor", "dubois_q", "gus.fernandez", "ingrid.moreau", "nikolai_p"]


def _wide() -> list[Leak]:
    out: list[Leak] = []

    def add(label: str, value: str, key: str | None = None, secret: str = "") -> None:
        out.append(Leak(label, value, key, secret))

    for _ in range(30):
        add("email", email())
    for plan, makers in PHONE_PLANS.items():
        for i in range(max(8, len(makers) * 2)):
            add(f"phone-{plan}", makers[i % len(makers)]())
    for _ in range(8):
        a, g, s = _ssn_parts()
        add("ssn-dashed", f"{a}-{g}-{s}")
    for _ in range(6):
        a, g, s = _ssn_parts()
        add("ssn-spaced", f"{a} {g} {s}")
    for key in ["ssn", "SSN", "social_security_number", "socialSecurityNo", "patient.ssn", "tax-id", "ssn_last9"]:
        a, g, s = _ssn_parts()
        add("ssn-bare", a + g + s, key)
    for word in ["SSN", "SSN:", "social security number", "SSN#", "Social Security No."]:
        a, g, s = _ssn_parts()  # bare nine digits, told apart by the words before them
        add("ssn-context", f"{word} {a}{g}{s}", secret=a + g + s)
    for i in range(8):
        n = _nino()
        add("nino-uk", n if i % 2 else f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:8]} {n[8]}")
    for _ in range(6):
        add("cpf-br", _cpf())
    for _ in range(6):
        add("aadhaar-in", _aadhaar())
    for _ in range(6):
        add("dni-es", _dni())
    for _ in range(6):
        add("codice-fiscale-it", _codice_fiscale())
    for _ in range(6):
        add("sin-ca", _sin())
    for key in ["passport", "passportNumber", "passport-no", "driver_license", "drivers_licence_number"]:
        add("passport-license", rnd(string.ascii_uppercase, 2) + digits(7), key)
    for i in range(14):
        prefix, length = CARD_BRANDS[(i + 3) % len(CARD_BRANDS)]
        add("card", fmt_card(luhn_complete(prefix, length), i % 3))
    for i, country in enumerate(["DE", "GB", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "PL", "SE", "IE"]):
        value = iban(country, bban_for(country))
        add("iban", " ".join(value[j : j + 4] for j in range(0, len(value), 4)) if i % 2 else value)
    for _ in range(6):
        add("mac-colon", ":".join(f"{R.randrange(256):02x}" for _ in range(6)))
    for _ in range(6):
        add("mac-dash", "-".join(f"{R.randrange(256):02X}" for _ in range(6)))
    for _ in range(6):
        h = rnd("0123456789abcdef", 12)
        add("mac-dotted", f"{h[:4]}.{h[4:8]}.{h[8:]}")
    for _ in range(12):
        add("ipv4", ipv4())
    for _ in range(6):
        add("ipv6", ipv6())
    for _ in range(4):
        add("aws-access-key", R.choice(["AKIA", "ASIA"]) + rnd(UPPER_NUM, 16))
    for _ in range(4):
        sk = rnd(B64, 40, mixed=True)
        add("aws-secret-key", f"aws_secret_access_key={sk}", secret=sk)
    for p in ["ghp_", "gho_", "ghs_", "ghu_"]:
        add("github-token", p + rnd(ALNUM, 36, mixed=True))
    for _ in range(4):
        add("gitlab-token", "glpat-" + rnd(URLSAFE, 20, mixed=True))
    for k in ["xoxb", "xoxp", "xoxe"]:
        add("slack-token", f"{k}-{digits(11)}-{digits(12)}-{rnd(ALNUM, 24, mixed=True)}")
    for p in ["sk_live_", "rk_live_", "sk_test_", "whsec_"]:
        add("stripe-key", p + rnd(ALNUM, 32, mixed=True))
    for _ in range(4):
        add("openai-key", "sk-proj-" + rnd(URLSAFE, 64, mixed=True))
    for _ in range(4):
        add("anthropic-key", "sk-ant-api03-" + rnd(URLSAFE, 80, mixed=True) + "AA")
    for _ in range(4):
        add("google-api-key", "AIza" + rnd(URLSAFE, 35, mixed=True))
    for _ in range(6):
        add("jwt", jwt())
    for maker in [lambda: "npm_" + rnd(ALNUM, 36, mixed=True), lambda: "hf_" + rnd(ALNUM, 34, mixed=True),
                  lambda: "SG." + rnd(URLSAFE, 22, mixed=True) + "." + rnd(URLSAFE, 43, mixed=True),
                  lambda: "shpat_" + rnd("0123456789abcdef", 32), lambda: "dop_v1_" + rnd("0123456789abcdef", 64),
                  lambda: "pypi-AgEIcHlwaS5vcmc" + rnd(URLSAFE, 70, mixed=True),
                  lambda: "glsa_" + rnd(ALNUM, 32, mixed=True) + "_" + rnd("0123456789abcdef", 8),
                  lambda: "xapp-1-" + rnd(UPPER_NUM, 11) + "-" + digits(13) + "-" + rnd("0123456789abcdef", 64)]:
        add("provider-token", maker())
    for label in ["RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY"]:
        pk = private_key(label)
        add("pem-private-key", pk, secret=pk.split("\n", 2)[1])
    for scheme, host in [("postgres", "db.internal:5432/app"), ("mysql", "10.0.0.7:3306/shop"),
                         ("mongodb+srv", "cluster0.mongo.internal/admin"), ("redis", "cache.internal:6379/0"),
                         ("amqps", "mq.internal/vhost"), ("mssql", "sql.internal:1433")]:  # fmt: skip
        userinfo = f"{R.choice(_USERNAMES)}:{rnd(ALNUM, 16, mixed=True)}"
        add("connection-string", f"{scheme}://{userinfo}@{host}", secret=userinfo)
    for _ in range(3):
        pw = rnd(ALNUM, 14, mixed=True) + "!"
        add("connection-string-kv", f"Server=tcp:sql.internal,1433;User ID=svc_app;Password={pw};Encrypt=True",
            secret=pw)
    for _ in range(2):
        ak = base64.b64encode(bytes(R.randrange(256) for _ in range(64))).decode()
        add("connection-string-kv", f"DefaultEndpointsProtocol=https;AccountName=acmestore;AccountKey={ak};"
            "EndpointSuffix=core.windows.net", secret=ak)
    for key in ["password", "db_pass", "PASSWORD", "pwd", "secret_key", "clientSecret", "api-token", "x-auth-token",
                "passphrase", "signing.key"]:  # fmt: skip
        add("password-keyed", rnd(ALNUM + "!#%", 16, mixed=True), key)
    for key in _PERSON_KEYS * 2:
        f, last = person()
        add("person-name", f"{f} {last}", key)
    for key in _USERNAME_KEYS * 2:
        add("username", R.choice(_USERNAMES) + str(R.randrange(10, 99)), key)
    for key in _USER_ID_KEYS * 2:
        add("user-id", R.choice(["usr_", "cus_", "u-", ""]) + rnd(ALNUM, 12, mixed=True), key)
    for key in _DEVICE_KEYS * 2:
        value = R.choice([
            "-".join(rnd("0123456789ABCDEF", n) for n in (8, 4, 4, 4, 12)),
            rnd("0123456789abcdef", 16), digits(15), rnd(UPPER_NUM, 12),
        ])
        add("device-id", value, key)
    for key in _ADDRESS_KEYS * 2:
        add("street-address", f"{R.randrange(1, 999)} {R.choice(_STREETS)}, Springfield {digits(5)}", key)
    for key in ["date_of_birth", "birthDate", "DOB", "patient.dob"]:
        add("birth-date", f"19{R.randrange(50, 99)}-{R.randrange(1, 13):02d}-{R.randrange(1, 29):02d}", key)
    for key in ["latitude", "geo.lng", "home_location"]:
        add("geo", f"{R.uniform(-80, 80):.6f}", key)
    for _ in range(6):  # a person's home directory in a path
        user = R.choice(_USERNAMES) + str(R.randrange(10, 99))
        add("home-path", f"/home/{user}/medical/scan-{digits(4)}.pdf", secret=user)
    for _ in range(4):
        user = R.choice(_USERNAMES) + str(R.randrange(10, 99))
        add("home-path", f"C:\\Users\\{user}\\Documents\\tax-{digits(4)}.xlsx", secret=user)
    return out


WIDE: list[Leak] = _wide()
SHAPED: list[Leak] = [i for i in WIDE if i.key is None]
KEYED_LEAKS: list[Leak] = [i for i in WIDE if i.key is not None]


#: the words around a value that make a bare nine-digit number read as an SSN
def prose(item: Leak, i: int = 0) -> str:
    """A sentence carrying a shape-recognisable item, as a user or an agent writes one."""
    v = item.value
    return [f"Please reach the customer at {v} before Friday.", f"Saw {v} in the logs (twice).",
            f"escalated: {v}; see ticket", f"The value was '{v}'."][i % 4]


def kv_line(item: Leak, style: int = 0) -> str:
    """A ``key: value`` / ``key=value`` / ``"key": "value"`` pair inside text."""
    key = item.key or "note"
    v = item.value
    if style == 0:
        return f"{key}: {v}"
    if style == 1:
        return f"{key}={v!r}" if " " in v or "'" in v else f"{key}={v}"
    return json.dumps({key: v})[1:-1]


def _benign_wide() -> list[str | int | float]:
    out: list[str | int | float] = list(BENIGN)
    for _ in range(12):
        out.append(f"ORD-{R.randrange(10000, 99999)}")
    for _ in range(8):
        out.append(str(R.randrange(10**8, 10**9)))  # order numbers: bare 9 digits with no telling key
    _section(out, "record ids")
    out += [
        "order 482139921 shipped", "invoice no. 100234578", "trace id 4bf92f3577b34da6", "row 123456789 of 900000000",
        "build 2024.11.15.3", "UTC+05:30", "port 5432 on db-1", "ISO 8601: 2024-11-15T09:30:00+01:00",
        "name: build-artifacts", "name=cache-warmup", "user_agent: curl/8.4.0",
        "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "See https://docs.example.com/v2/guides/auth#tokens", "version: 2.4.1", "timeout: 30s", "region=eu-west-1",
        "status: active", "file: reports/2024/q3.xlsx", "Retry-After: 120", "Content-Type: application/json",
        "SELECT name, created_at FROM projects WHERE archived = false", "grep -c ERROR app.log",
        "The handle of the pan is hot.", "Use the login page to sign in.", "Recipient list is empty.",
        "uuid 123e4567-e89b-12d3-a456-426614174000", "lat/long precision is 6 decimals", "card game rules.md",
        "The device restarted at 10:42.", "mac and cheese recipe", "sku 0012-3456-7890", "PO-2024-000981",
        "case #20241115-0042", "Serial console at 115200 baud", "ISBN 0-306-40615-2", "DOI 10.1000/182",
        "Estimated 3-5 business days", "call graph depth 12", "phone-book app v3", "address space layout",
    ]  # fmt: skip
    _section(out, "key: value text and near misses")
    return out


BENIGN_WIDE: list[str | int | float | bool | None] = _benign_wide()
