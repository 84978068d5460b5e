"""Tempest's subunit stream turned into one outcome per selected test.

Test ids are kept without their `[id-…,smoke]` suffix, the form of the tier lists
and the allowlist. A class whose setUpClass failed or skipped reports one
`setUpClass (module.Class)` event; that outcome is given to each selected test of
the class, which is what a reader of the counts expects."""

import re
import xml.etree.ElementTree as ET

import subunit
import testtools

PASS, FAIL, SKIP, NOT_RUN = "pass", "fail", "skip", "not run"
_FIXTURE = re.compile(r"^(setUpClass|tearDownClass) \((?P<cls>[\w.]+)\)$")
_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failure|Timeout|Mismatch|\w+): ")


def strip_id(test_id):
    return test_id.split("[", 1)[0]


def class_of(test_id):
    return strip_id(test_id).rsplit(".", 1)[0]


def service_of(test_id):
    parts = test_id.split(".")
    if len(parts) > 3 and parts[1] == "serial_tests":
        # tempest.serial_tests.api.<service>…: run alone, same services.
        parts = parts[1:]
    if len(parts) > 2 and parts[1] == "api":
        return parts[2]
    return parts[1] if len(parts) > 1 else test_id


_VOLATILE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?"), "<time>"),
    (re.compile(r"0x[0-9a-f]{6,}"), "0x…"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"tempest-[\w-]*?-\d{6,}"), "tempest-<name>"),
]


def stable(line):
    """The line without what changes from run to run (ids, times, ports,
    random names), so equal failures group and the recorded results only
    change when behaviour does."""
    for pattern, repl in _VOLATILE:
        line = pattern.sub(repl, line)
    return line


def first_line(details, status):
    """The line a person reads first: the skip reason, or the exception raised."""
    def text(name):
        d = details.get(name)
        try:
            return d.as_text() if d is not None else ""
        except Exception:  # undecodable attachment
            return ""

    if status == SKIP:
        return stable((text("reason") or "skipped").strip().splitlines()[0])[:300]
    tb = text("traceback")
    lines = [ln for ln in tb.splitlines() if ln.strip()]
    exc = [ln for ln in lines if _EXC_LINE.match(ln)]
    if exc:
        return stable(exc[-1])[:200]
    return stable(lines[-1] if lines else "failed without a traceback")[:200]


def parse_subunit(path):
    """{test id or fixture id: (status, first line, traceback)} from a v2 stream."""
    events = {}

    def on_test(t):
        st = t["status"]
        status = {"success": PASS, "xfail": PASS, "skip": SKIP}.get(st, FAIL)
        if st in ("exists", "inprogress"):
            status = FAIL
        tb = ""
        if "traceback" in t["details"]:
            try:
                tb = t["details"]["traceback"].as_text()
            except Exception:
                tb = ""
        events[t["id"]] = (status, first_line(t["details"], status), tb)

    with open(path, "rb") as f:
        stream = subunit.ByteStreamToStreamResult(f, non_subunit_name="stdout")
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        stream.run(result)
        result.stopTestRun()
    return events


def outcomes(selected, events):
    """selected: full test ids (with suffix) that the run was asked for.
    Returns {stripped id: {"status", "reason", "traceback"}}."""
    by_id = {strip_id(k): v for k, v in events.items() if not _FIXTURE.match(k)}
    fixtures = {}
    for k, v in events.items():
        m = _FIXTURE.match(k)
        if m and v[0] != PASS:
            fixtures.setdefault(m.group("cls"), v)
    out = {}
    for full in selected:
        tid = strip_id(full)
        if tid in by_id:
            status, reason, tb = by_id[tid]
        elif class_of(tid) in fixtures:
            status, reason, tb = fixtures[class_of(tid)]
        else:
            status, reason, tb = NOT_RUN, "no result in the subunit stream", ""
        out[tid] = {"status": status, "reason": reason, "traceback": tb}
    return out


def counts(results):
    c = {PASS: 0, FAIL: 0, SKIP: 0, NOT_RUN: 0}
    for r in results.values():
        c[r["status"]] += 1
    return c


def write_junit(results, path, name):
    c = counts(results)
    suite = ET.Element("testsuite", name=name, tests=str(len(results)),
                       failures=str(c[FAIL] + c[NOT_RUN]), skipped=str(c[SKIP]), errors="0")
    for tid, r in sorted(results.items()):
        cls, _, meth = tid.rpartition(".")
        case = ET.SubElement(suite, "testcase", classname=cls, name=meth)
        if r["status"] == SKIP:
            ET.SubElement(case, "skipped", message=r["reason"])
        elif r["status"] in (FAIL, NOT_RUN):
            el = ET.SubElement(case, "failure", message=r["reason"])
            el.text = r["traceback"]
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def per_class(results):
    rows = {}
    for tid, r in results.items():
        row = rows.setdefault(class_of(tid), {PASS: 0, FAIL: 0, SKIP: 0, NOT_RUN: 0})
        row[r["status"]] += 1
    return dict(sorted(rows.items()))


def read_list(path):
    try:
        with open(path) as f:
            return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    except FileNotFoundError:
        return []
