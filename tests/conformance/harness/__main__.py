"""tests/conformance/run: Tempest 47.0.0 against a fresh OxiStack (see ../run)."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

from . import doc, results, tempest_conf
from .cloud import Cloud, CloudError

ROOT = os.environ.get("OXISTACK_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HERE = os.path.join(ROOT, "tests", "conformance")
WORK = os.environ.get("OXISTACK_CONFORMANCE_DIR") or os.path.join(ROOT, "target", "conformance")
TIERS = {
    "1": "tier1-core.txt", "2": "tier2-net.txt", "3": "tier3-volume.txt",
    "4": "tier4-advanced.txt", "identity-admin": "extra-identity-admin.txt",
    "untiered": "untiered-api.txt",
}
ALLOWLIST = os.path.join(HERE, "allowlist.txt")
RECORDED = os.path.join(HERE, "results")
COMPAT_DOC = os.path.join(ROOT, "docs", "compatibility.md")
VENV_BIN = os.path.dirname(sys.executable)


def log(msg):
    print(f"conformance: {msg}", flush=True)


def parse_args():
    ap = argparse.ArgumentParser(prog="tests/conformance/run")
    sel = ap.add_mutually_exclusive_group()
    sel.add_argument("--tier", choices=sorted(TIERS), help="a tier list (default 1)")
    sel.add_argument("--regex", help="tests whose id matches this regex")
    ap.add_argument("--keep", action="store_true",
                    help="keep the cloud's data dir (the server is stopped either way)")
    ap.add_argument("--update-allowlist", action="store_true",
                    help="add this run's new passes to allowlist.txt")
    ap.add_argument("--bin", default=os.environ.get("OXISTACK_BIN"),
                    help="the oxistack binary (default target/release/oxistack, built if"
                         " missing)")
    ap.add_argument("--virt", choices=["auto", "qemu", "fake"], default="auto",
                    help="auto: qemu when the binary and host run it, else fake")
    ap.add_argument("--validation", action="store_true",
                    help="[validation] run_validation = true (SSH into guests)")
    ap.add_argument("--no-ipv6", action="store_true", help="[network-feature-enabled] ipv6 = false")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                    help="override one tempest.conf option (repeatable), e.g."
                         " --set network-feature-enabled.ipv6_subnet_attributes=true")
    ap.add_argument("--no-record", action="store_true",
                    help="do not write tests/conformance/results/ nor docs/compatibility.md"
                         " (CI: check the allowlist without touching checked-in files)")
    ap.add_argument("--docs-only", action="store_true",
                    help="only regenerate docs/compatibility.md from the recorded results")
    a = ap.parse_args()
    if not a.regex and not a.tier:
        a.tier = "1"
    return a


def binary(args):
    if args.bin:
        return os.path.abspath(args.bin)
    path = os.path.join(ROOT, "target", "release", "oxistack")
    if not os.path.exists(path):
        log("building the release binary (cargo build --release -p oxistack)")
        subprocess.run(["cargo", "build", "--release", "-p", "oxistack"], cwd=ROOT, check=True)
    return path


def tiny_image():
    """The tiny guest, built once (tools/build-guest-image caches its downloads)."""
    path = os.environ.get("OXISTACK_GUEST_IMAGE") or os.path.join(
        ROOT, "target", "guest", "tiny.qcow2")
    if not os.path.exists(path):
        log(f"building the tiny guest image {path}")
        subprocess.run([os.path.join(ROOT, "tools", "build-guest-image"), "tiny", path],
                       check=True)
    return path


def start_cloud(args, bin_path, run_dir):
    """qemu when the binary accepts it and it starts, else fake (`--virt auto`)."""
    data_dir = os.path.join(run_dir, "data")
    log_path = os.path.join(run_dir, "oxistack.log")
    tries = ["qemu", "fake"] if args.virt == "auto" else [args.virt]
    why_not = None
    for virt in tries:
        cloud = Cloud(bin_path, data_dir, log_path, virt,
                      datapath="linux" if args.validation else "fake")
        try:
            cloud.start()
            if args.validation:
                cloud.join_public_network()
            return cloud, why_not
        except (CloudError, subprocess.CalledProcessError) as e:
            cloud.stop()
            why_not = f"--virt {virt} did not start: {e}"
            log(why_not)
    raise CloudError(why_not)


def prepare(cloud, info):
    """Flavors, two images and (with networking) the public network."""
    res = {"virt": cloud.virt}
    res["flavor"] = cloud.create_flavor("conformance.small", 256, 1, 1)
    res["flavor_alt"] = cloud.create_flavor("conformance.medium", 384, 1, 2)
    img = tiny_image()
    res["image"] = cloud.upload_image("conformance-tiny", img, "qcow2")
    res["image_alt"] = cloud.upload_image("conformance-tiny-alt", img, "qcow2")
    res["public_network"] = cloud.public_network() if "network" in info["services"] else None
    return res


def selection(args, run_dir, env):
    """The include list handed to tempest and the test ids it selects."""
    cmd = [os.path.join(VENV_BIN, "tempest"), "run", "--list-tests",
           "--config-file", os.path.join(run_dir, "etc", "tempest.conf")]
    if args.regex:
        cmd += ["--regex", args.regex]
    else:
        ids = results.read_list(os.path.join(HERE, "tiers", TIERS[args.tier]))
        # Anchored, so `test_foo` does not select `test_foo_bar`.
        include = os.path.join(run_dir, "include-list.txt")
        with open(include, "w") as f:
            for tid in ids:
                f.write("^" + re.escape(tid) + r"(\[|$)" + "\n")
        cmd += ["--include-list", include]
    if not os.path.isdir(os.path.join(run_dir, ".stestr")):
        subprocess.run([os.path.join(VENV_BIN, "stestr"), "init"], cwd=run_dir, env=env,
                       check=True, capture_output=True)
    out = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("tempest run --list-tests failed:\n" + out.stdout + out.stderr)
    listed = [ln.strip() for ln in out.stdout.splitlines() if ln.startswith("tempest.")]
    return cmd[cmd.index("--config-file") + 2:], listed


def main():
    args = parse_args()
    if args.docs_only:
        doc.write(RECORDED, COMPAT_DOC)
        log(f"wrote {COMPAT_DOC}")
        return 0
    label = f"tier-{args.tier}" if args.tier else "regex"
    run_dir = os.path.join(WORK, "runs", label)
    if os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    for sub in ("etc", "logs", "lock", "tmp", "cache"):
        os.makedirs(os.path.join(run_dir, sub))
    t0 = time.monotonic()
    bin_path = binary(args)
    cloud, virt_note = start_cloud(args, bin_path, run_dir)
    log(f"oxistack serve --virt {cloud.virt} at {cloud.url} (data {cloud.data_dir})")
    try:
        cloud.login()
        info = cloud.discover()
        res = prepare(cloud, info)
        conf = tempest_conf.build(cloud, info, res, run_dir, args)
        for item in args.set:
            key, _, value = item.partition("=")
            section, _, option = key.rpartition(".")
            conf.override(section, option, value, "set on the command line (--set)")
        with open(os.path.join(run_dir, "etc", "tempest.conf"), "w") as f:
            f.write(conf.render())
        env = dict(os.environ)
        env.update({
            "XDG_CACHE_HOME": os.path.join(run_dir, "cache"),
            "TMPDIR": os.path.join(run_dir, "tmp"),
            "TEMPEST_CONFIG_DIR": os.path.join(run_dir, "etc"),
            "TEMPEST_CONFIG": "tempest.conf",
            "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
        })
        filter_args, selected = selection(args, run_dir, env)
        log(f"{len(selected)} tests selected; services {', '.join(info['services'])};"
            f" compute {info['compute']['min']}-{info['compute']['max']},"
            f" placement {info['placement']['min']}-{info['placement']['max']}")
        with open(os.path.join(run_dir, "tempest-run.log"), "w") as out:
            subprocess.run(
                [os.path.join(VENV_BIN, "tempest"), "run", "--config-file",
                 os.path.join(run_dir, "etc", "tempest.conf"),
                 "--concurrency", str(args.concurrency)] + filter_args,
                cwd=run_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
        subunit_path = os.path.join(run_dir, "results.subunit")
        with open(subunit_path, "wb") as out:
            subprocess.run([os.path.join(VENV_BIN, "stestr"), "last", "--subunit"],
                           cwd=run_dir, env=env, stdout=out, check=True)
    finally:
        cloud.stop()
        if not args.keep:
            shutil.rmtree(cloud.data_dir, ignore_errors=True)
    elapsed = time.monotonic() - t0

    outcome = results.outcomes(selected, results.parse_subunit(subunit_path))
    results.write_junit(outcome, os.path.join(run_dir, "results.xml"), label)
    c = results.counts(outcome)
    report(outcome)
    print(f"{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped"
          + (f", {c['not run']} not run" if c["not run"] else ""), flush=True)
    log(f"{label} took {elapsed:.0f}s with --virt {cloud.virt}"
        + (f" ({virt_note})" if virt_note else ""))
    log(f"JUnit XML {run_dir}/results.xml, subunit {subunit_path}, logs {run_dir}/"
        "{tempest-run.log,logs/tempest.log,oxistack.log}")

    record = {
        "tier": args.tier or "regex", "virt": cloud.virt, "recorded": time.time(),
        "elapsed_s": round(elapsed), "counts": c,
        "cloud": {k: info[k] for k in ("services", "compute", "placement",
                                       "network_extensions", "volume")},
        "conf_reasons": conf.reasons,
        "tests": {t: {"status": r["status"], "reason": r["reason"]}
                  for t, r in sorted(outcome.items())},
    }
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(record, f, indent=1)
    if args.tier and not args.no_record:
        os.makedirs(RECORDED, exist_ok=True)
        with open(os.path.join(RECORDED, f"tier-{args.tier}.json"), "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.write("\n")
        doc.write(RECORDED, COMPAT_DOC)
        log(f"updated {os.path.relpath(COMPAT_DOC, ROOT)}")
    status = allowlist_check(outcome, args)
    if status:
        cloud_log_problems(os.path.join(run_dir, "oxistack.log"))
    return status


def cloud_log_problems(path, keep=40):
    """The cloud's last warnings and errors, so a failed run in CI explains itself."""
    try:
        with open(path, errors="replace") as f:
            lines = [ln.rstrip() for ln in f if " ERROR " in ln or " WARN " in ln]
    except OSError:
        return
    if lines:
        print(f"\nthe cloud's last {min(keep, len(lines))} warnings and errors ({path}):")
        for ln in lines[-keep:]:
            print(f"  {ln[:400]}")


def report(outcome):
    rows = results.per_class(outcome)
    width = max((len(k) for k in rows), default=10)
    print(f"{'class'.ljust(width)}  pass  fail  skip")
    for cls, r in rows.items():
        print(f"{cls.ljust(width)}  {r['pass']:4}  {r['fail'] + r['not run']:4}  {r['skip']:4}")
    fails = [(t, r) for t, r in sorted(outcome.items()) if r["status"] in ("fail", "not run")]
    if fails:
        print("\nfailures:")
        for t, r in fails:
            print(f"  {t}\n      {r['reason']}")


def allowlist_check(outcome, args):
    allow = set(results.read_list(ALLOWLIST))
    passed = {t for t, r in outcome.items() if r["status"] == "pass"}
    regressions = sorted(t for t in allow & set(outcome) if t not in passed)
    new = sorted(passed - allow)
    if new:
        print(f"\n{len(new)} new passes not in tests/conformance/allowlist.txt"
              + ("" if args.update_allowlist else " (add them with --update-allowlist)") + ":")
        for t in new:
            print(f"  {t}")
        if args.update_allowlist:
            with open(ALLOWLIST, "w") as f:
                f.write("# Tempest 47.0.0 tests that pass and must keep passing"
                        " (tests/conformance/run fails when one does not).\n"
                        "# Add new passes with tests/conformance/run --update-allowlist.\n")
                for t in sorted(allow | passed):
                    f.write(t + "\n")
            log(f"added {len(new)} tests to {ALLOWLIST}")
    if regressions:
        print(f"\nREGRESSION: {len(regressions)} allowlisted tests did not pass:")
        for t in regressions:
            print(f"  {t}: {outcome[t]['status']}: {outcome[t]['reason']}")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CloudError, RuntimeError, subprocess.CalledProcessError) as e:
        log(f"error: {e}")
        sys.exit(2)
