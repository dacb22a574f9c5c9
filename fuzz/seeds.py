#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/<target>/ (files named seed-*).

Run from the repository root after `cargo build --bin policyctl`:

    python3 fuzz/seeds.py [path/to/policyctl]

Seeds come from the project's own inputs: policies/, the decision table
(testdata/cases/demo_decisions.json), the Otoroshi fixtures
(testdata/otoroshi/), and configurations as the tests write them.
Compiled and signed seeds are made by policyctl itself; the signing key is
the seed the `signed` target verifies with (32 bytes of 7).
"""

import base64
import glob
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
POLICYCTL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "policyctl")
TMP = tempfile.mkdtemp(prefix="tenantgate-seeds-")


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def write(target, name, data):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(data)


def policyctl(*args):
    subprocess.run([POLICYCTL, *args], check=True, capture_output=True)


def compiled(document, name):
    source = os.path.join(TMP, name + ".json")
    out = os.path.join(TMP, name + ".tgsnap")
    with open(source, "w") as f:
        json.dump(document, f)
    policyctl("compile", "--policy", source, "--out", out)
    with open(out, "rb") as f:
        return f.read()


def signed(payload, name, seed=bytes([7] * 32), sequence="42"):
    key = os.path.join(TMP, name + ".key")
    with open(key, "w") as f:
        f.write(base64.b64encode(seed).decode() + "\n")
    source = os.path.join(TMP, name + ".in")
    out = os.path.join(TMP, name + ".signed")
    with open(source, "wb") as f:
        f.write(payload)
    policyctl("sign", "--key", key, "--policy", source, "--out", out, "--sequence", sequence)
    with open(out, "rb") as f:
        return f.read()


DEMO = json.loads(read("policies/demo.json"))
MINIMAL = json.loads(read("policies/minimal.json"))
IDENTITIES = json.loads(read("testdata/otoroshi/identities.json"))
TABLE = json.loads(read("testdata/cases/demo_decisions.json"))


def with_identities(document):
    document = json.loads(json.dumps(document))
    for kind, field in (("apps", "otoroshi_client_ids"), ("users", "otoroshi_emails")):
        for item in document[kind]:
            if item["id"] in IDENTITIES[kind]:
                item[field] = IDENTITIES[kind][item["id"]]
    return document


DEMO_IDS = with_identities(DEMO)
DEMO_BIN = compiled(DEMO, "demo")
DEMO_IDS_BIN = compiled(DEMO_IDS, "demo-identities")
MINIMAL_BIN = compiled(MINIMAL, "minimal")

# snapshot_json: the documents, valid and invalid, and the other forms the
# bytes entry point reads.
write("snapshot_json", "demo.json", read("policies/demo.json"))
write("snapshot_json", "demo-identities.json", json.dumps(DEMO_IDS, indent=1))
write("snapshot_json", "minimal.json", read("policies/minimal.json"))
for path in sorted(glob.glob(os.path.join(ROOT, "policies", "invalid", "*.json"))):
    write("snapshot_json", "invalid-" + os.path.basename(path), read(path))
write("snapshot_json", "minimal.tgsnap", MINIMAL_BIN)
write("snapshot_json", "empty-object.json", "{}")
write("snapshot_json", "revision-only.json", '{"revision": "r1"}')

# compiled: policyctl compile output.
write("compiled", "demo.tgsnap", DEMO_BIN)
write("compiled", "demo-identities.tgsnap", DEMO_IDS_BIN)
write("compiled", "minimal.tgsnap", MINIMAL_BIN)
write("compiled", "empty.tgsnap", compiled({"revision": "r0"}, "empty"))

# signed: envelopes around JSON and compiled snapshots, with the verifier's
# key and another one, and one whose revision is not its payload's.
write("signed", "demo-json.signed", signed(read("policies/demo.json"), "demo-json"))
write("signed", "demo-compiled.signed", signed(DEMO_BIN, "demo-compiled"))
write("signed", "minimal-json.signed", signed(read("policies/minimal.json"), "minimal-json"))
write("signed", "other-key.signed", signed(read("policies/minimal.json"), "other", seed=bytes([9] * 32)))
envelope = bytearray(signed(read("policies/minimal.json"), "tampered"))
envelope[-3] ^= 1
write("signed", "tampered.signed", bytes(envelope))
write("signed", "unsigned-minimal.json", read("policies/minimal.json"))

# intake: snapshots taken in part after part (compiled ones cut as they
# arrive, signed or not); the last byte picks the part size.
write("intake", "demo.tgsnap", DEMO_BIN)
write("intake", "demo-identities.tgsnap", DEMO_IDS_BIN)
write("intake", "empty.tgsnap", compiled({"revision": "r0"}, "empty"))
write("intake", "demo-compiled.signed", signed(DEMO_BIN, "demo-compiled"))
write("intake", "demo-json.signed", signed(read("policies/demo.json"), "demo-json"))
write("intake", "minimal.json", read("policies/minimal.json"))

# plugin_config: configurations as the tests and the README write them.
minimal_b64 = base64.b64encode(MINIMAL_BIN).decode()
keygen = subprocess.run([POLICYCTL, "keygen", "--out", os.path.join(TMP, "fresh.key")],
                        check=True, capture_output=True, text=True)
public_key = keygen.stdout.strip()
configs = {
    "empty.json": "{}",
    "blank.json": "  \n",
    "enforce-minimal.json": {"mode": "enforce", "environment": "prod", "snapshot": {"inline": MINIMAL}},
    "audit-demo.json": {"mode": "audit", "environment": "prod", "snapshot": {"inline": DEMO}},
    "compiled-minimal.json": {"snapshot": {"compiled": minimal_b64}},
    "sources.json": {"sources": {"api_key_headers": ["x-api-key", "Authorization"], "api_key_query": "key",
                                 "user_header": "", "tenant_header": "X-Org"},
                     "path_case": "insensitive", "filter_state": "denials"},
    "remote.json": {"snapshot": {"remote": {"cluster": "policy", "path": "/snapshot", "authority": "policy.local",
                                            "poll_ms": 5000, "timeout_ms": 2000,
                                            "public_keys": [public_key]}},
                    "fail_open": True, "max_staleness_ms": 60000},
    "remote-bad-key.json": {"snapshot": {"remote": {"cluster": "policy", "public_keys": ["AAAA"]}}},
    "key-lookup.json": {"key_lookup": {"cluster": "policy", "path_prefix": "/keys/", "authority": "policy.local",
                                       "timeout_ms": 500, "ttl_ms": 60000, "negative_ttl_ms": 10000,
                                       "cache_size": 10000, "max_in_flight": 16, "max_per_second": 100}},
    "typo.json": '{"mode": "enforce", "snapshto": {}}',
    "two-sources.json": {"snapshot": {"inline": MINIMAL, "compiled": minimal_b64}},
    "otoroshi-options.json": {"otoroshi": {"loc_fallback": True}, "snapshot": {"compiled": minimal_b64}},
}
for name, config in configs.items():
    write("plugin_config", name, config if isinstance(config, str) else json.dumps(config))

# request: the decision table's requests. One options byte (environment in
# bits 0-1, clock in bits 4-7; see fuzz/targets/request.rs), then
# NUL-separated method, host, path, header names and values.
ENVIRONMENTS = {None: 0, "prod": 1, "staging": 2, "dev": 3}
CLOCKS = {"2026-12-01T00:00:00Z": 0, "2020-01-01T00:00:00Z": 1, "2030-01-01T00:00:00Z": 2,
          "2026-01-01T00:00:00Z": 3, "2027-01-01T00:00:00Z": 4}


def options(case):
    environment = case.get("environment", TABLE["defaults"]["environment"])
    clock = case.get("now", TABLE["defaults"]["now"])
    return ENVIRONMENTS.get(environment, 1) | (CLOCKS.get(clock, 0) << 4)


def request_seed(case):
    fields = [case["method"], case.get("host", TABLE["defaults"]["host"]), case["path"]]
    for name, value in case.get("headers", []):
        fields += [name, value]
    return bytes([options(case)]) + b"\0".join(f.encode() for f in fields)


def header_map(pairs):
    out = struct.pack("<I", len(pairs))
    for name, value in pairs:
        out += struct.pack("<II", len(name), len(value))
    for name, value in pairs:
        out += name + b"\0" + value + b"\0"
    return out


def slug(text):
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


for case in TABLE["cases"]:
    write("request", slug(case["name"]), request_seed(case))
    pairs = [(b":method", case["method"].encode()), (b":path", case["path"].encode()),
             (b":authority", case.get("host", TABLE["defaults"]["host"]).encode())]
    pairs += [(n.encode(), v.encode()) for n, v in case.get("headers", [])]
    # The last byte is the options byte of the request target.
    write("envoy_headers", slug(case["name"]), header_map(pairs) + bytes([options(case)]))
write("request", "forged-annotations",
      bytes([1]) + b"\0".join([b"GET", b"localhost", b"/orders/1?apikey=demo-storefront-key&x=1",
                               b"x-tenant-id", b"acme", b"X_Principal", b"app:x", b"x.policy.decision", b"allow"]))
write("request", "insensitive-two-key-headers",
      bytes([1 | 4 | 8]) + b"\0".join([b"POST", b"LOCALHOST:8080", b"/Orders/%61dmin;x//purge?api%6bey=k",
                                       b"x-key", b"demo-ops-key", b"X-API-KEY", b"demo-ops-key"]))
write("envoy_headers", "forged-spellings", header_map([
    (b":method", b"GET"), (b":path", b"/orders/1"), (b":authority", b"localhost"),
    (b"x-api-key", b"demo-storefront-key"), (b"x_tenant_id", b"forged"), (b"X.Principal", b"forged"),
    (b"x-policy-decision", b"allow"), (b"x-tenant", b"kept"), (b"x-api-key", b"\xff")]) + b"\x01")
write("envoy_headers", "empty", b"")

# otoroshi_input: Otoroshi's contexts (testdata/otoroshi/), with our
# settings in config.config, for access and transform_request.
ACCESS = json.loads(read("testdata/otoroshi/access-context.json"))
APIKEY_LIGHT = json.loads(read("testdata/otoroshi/apikey-light.json"))
APIKEY_FULL = json.loads(read("testdata/otoroshi/apikey-full.json"))
USER = json.loads(read("testdata/otoroshi/user.json"))


def fill(value, name, replacement):
    if value == name:
        return replacement
    if isinstance(value, list):
        return [fill(v, name, replacement) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, name, replacement) for k, v in value.items()}
    return value


def context(settings, method, uri, headers, transform=False, apikey=None, full=None, user=None):
    ctx = fill(json.loads(json.dumps(ACCESS)), "__SETTINGS__", settings)
    ctx = fill(ctx, "__ROUTE__", None)
    request = ctx["request"]
    request["method"], request["uri"] = method, uri
    path, _, query = uri.partition("?")
    request["path"] = path
    request["query"] = {}
    for pair in filter(None, query.split("&")):
        k, _, v = pair.partition("=")
        request["query"].setdefault(k, []).append(v)
    request["headers"].update(headers)
    if apikey is not None:
        ctx["apikey"] = apikey
    if full is not None:
        ctx["attrs"]["otoroshi.core.ApiKey"] = full
    if user is not None:
        ctx["user"] = user
    if transform:
        upstream = {k: v for k, v in request["headers"].items()
                    if k not in ("Remote-Address", "Timeout-Access", "Raw-Request-URI", "Tls-Session-Info")}
        upstream["Host"] = "backend.internal:8080"
        upstream["X-Tenant-Id"] = "forged"
        upstream["x_principal"] = "forged"
        ctx["otoroshi_request"] = {"url": "http://backend.internal:8080" + uri, "method": method,
                                   "headers": upstream}
        ctx["config"]["functionName"] = "transform_request"
    return json.dumps(ctx)


demo_b64 = base64.b64encode(DEMO_IDS_BIN).decode()
inline_minimal = {"environment": "prod", "snapshot": {"inline": MINIMAL}}
compiled_demo = {"environment": "prod", "snapshot": {"compiled": demo_b64}}
compiled_loc = {"environment": "prod", "snapshot": {"compiled": demo_b64}, "otoroshi": {"loc_fallback": True}}
key = {"X-Api-Key": "demo-storefront-key"}
otoroshi = {
    "key-compiled": context(compiled_demo, "GET", "/orders/1", key),
    "key-compiled-transform": context(compiled_demo, "GET", "/orders/1?apikey=demo-storefront-key&x=1", {}, True),
    "revoked-key-transform": context(compiled_demo, "POST", "/orders/1", {"X-Api-Key": "demo-revoked-key"}, True),
    "user-header": context(dict(compiled_demo, sources={"user_header": "x-user-id"}), "GET", "/research/x",
                           {"X-User-Id": "pat", "X-Tenant-Id": "research"}),
    "apikey-light": context(compiled_demo, "GET", "/orders/1", {}, apikey=APIKEY_LIGHT),
    "apikey-full-loc": context(compiled_loc, "GET", "/orders/1", {}, True, apikey=APIKEY_LIGHT, full=APIKEY_FULL),
    "user": context(compiled_demo, "GET", "/research/x", {}, True, user=USER),
    "inline-minimal": context(inline_minimal, "GET", "/", {}, True),
    "inline-demo-audit": context({"mode": "audit", "environment": "prod", "snapshot": {"inline": DEMO}},
                                 "DELETE", "/orders/admin/x?apikey=demo-ops-key", {}, True),
    "settings-as-string": context(json.dumps(compiled_demo), "GET", "/catalog", key),
    "bad-settings": context({"mode": "block"}, "GET", "/orders/1", key, True),
    "fail-open": context({"fail_open": True}, "GET", "/orders/1", key, True),
    "not-an-object": "[]",
}
for name, ctx in otoroshi.items():
    write("otoroshi_input", name, ctx)

# lookup_answer: api_keys entries for the looked-up key, and near misses.
digest = hashlib.sha256(b"fuzz-lookup-key").hexdigest()
answers = {
    "found.json": {"id": "k", "app": "acme-storefront", "sha256": digest, "status": "active"},
    "found-full.json": {"id": "k2", "app": "acme-ops-console", "sha256": digest, "status": "active",
                        "expires_at": "2027-01-01T00:00:00Z", "read_only": True, "environments": ["prod"]},
    "revoked.json": {"id": "k", "app": "acme-storefront", "sha256": digest, "status": "revoked"},
    "pending.json": {"id": "k", "app": "research-notebook", "sha256": digest, "status": "pending"},
    "other-digest.json": {"id": "k", "app": "acme-storefront", "sha256": "0" * 64, "status": "active"},
    "unknown-app.json": {"id": "k", "app": "deleted-app", "sha256": digest, "status": "active"},
    "bad-environment.json": {"id": "k", "app": "acme-storefront", "sha256": digest, "status": "active",
                             "environments": ["moon"]},
    "extra-field.json": {"id": "k", "app": "acme-storefront", "sha256": digest, "status": "active", "extra": 1},
}
for name, answer in answers.items():
    write("lookup_answer", name, json.dumps(answer))
write("lookup_answer", "not-json", "not json")
write("lookup_answer", "status-404", "404")

# jwt_payload: the token table's payloads as Envoy 1.40 hands them over (the
# pairs encoding, a list claim nested as items with empty values, a number
# as its 8 raw bytes), and one as a protobuf Struct; the first byte is the
# mode (bit 0: asserted) and the route (bits 1-2).
def claim_bytes(value):
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return header_map([(str(item).encode(), b"") for item in value])
    return struct.pack("<d", float(value))


def pb_len(number, body):
    out, n = bytes([(number << 3) | 2]), len(body)
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out + body


def pb_struct(payload):
    out = b""
    for key, value in payload.items():
        if isinstance(value, list):
            items = b"".join(pb_len(1, pb_len(3, str(v).encode())) for v in value)
            encoded = pb_len(6, items)
        else:
            encoded = pb_len(3, str(value).encode())
        out += pb_len(1, pb_len(1, key.encode()) + pb_len(2, encoded))
    return out


TOKENS = json.loads(read("testdata/cases/token_decisions.json"))
ROUTES = ["/orders/1", "/catalog/x", "/workspace", "/reports/q3"]
for case in TOKENS["cases"]:
    if "token" not in case:
        continue
    payload = dict(case["token"], exp=1900000000)
    mode = 1 if case.get("token_mode") == "asserted" else 0
    route = next((i for i, r in enumerate(ROUTES) if case["path"].startswith(r.rsplit("/", 1)[0] or r)), 0)
    pairs = [(k.encode(), claim_bytes(v)) for k, v in payload.items()]
    write("jwt_payload", slug(case["name"]), bytes([mode | (route << 1)]) + header_map(pairs))
write("jwt_payload", "struct-asserted", bytes([1]) + pb_struct(
    {"iss": "https://idp.globex.example", "sub": "sso-7", "org": "acme", "groups": ["acme-admins"]}))
write("jwt_payload", "empty", b"")
