#!/usr/bin/env python3
"""Discovery timings in the mDNS laboratory (eng/mdnslab.sh), as docs/benchmarks.md records them.

Run as root after `dotnet build -c Release`:  python3 eng/mdnslab-bench.py [ROUNDS]

Per round, on a fresh lab segment of three hosts (h1 PeerLink node, h2 PeerLink browser, h3 avahi-daemon):
  appear   node start (before PeerNodeBuilder.StartAsync) in h1 -> Found at a browser already running in h2
  browse   BrowseAsync started in h2 -> Found for the already-advertised node (and spawn -> Found line)
  avahi    avahi-browse -r -p spawned in h3 -> first resolved IPv4 line for the same node (spawn -> line), once with
           an avahi-daemon that was running when the node announced itself (warm cache), once with one started after
           the announcements (cold: it must ask the network, as the PeerLink browser does)
  goodbye  the node's disposal starts -> Lost at the running browser
"""
import json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "eng", "mdnslab.sh")
DLL = os.path.join(ROOT, "tests", "PeerLink.LabTests", "bin", "Release", "net10.0", "PeerLink.LabTests.dll")
ENV = dict(os.environ, MDNSLAB_PREFIX="mb-")


def ns(i, *cmd):
    return ["ip", "netns", "exec", f"mb-h{i}", *cmd]


def helper(i, *args):
    return subprocess.Popen(ns(i, "dotnet", DLL, *args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)


def line_json(p):
    line = p.stdout.readline()
    if line.startswith("ready"):
        line = line[len("ready"):].strip() or "{}"
    return json.loads(line)


def avahi_browse(bus):
    t0 = time.monotonic()
    avahi = subprocess.Popen(ns(3, "env", "DBUS_SYSTEM_BUS_ADDRESS=" + bus, "avahi-browse", "-r", "-p", "_peerlink._tcp"),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    elapsed = None
    for out in avahi.stdout:
        if out.startswith("=;eth0;IPv4;"):
            elapsed = (time.monotonic() - t0) * 1000
            break
    avahi.kill()
    avahi.wait()
    return elapsed


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    subprocess.run(["bash", LAB, "down"], env=ENV, check=False)
    subprocess.run(["bash", LAB, "up", "3"], env=ENV, check=True)
    bus = subprocess.run(["bash", LAB, "avahi", "3"], env=ENV, check=True, capture_output=True, text=True).stdout.strip()
    results = {"appear": [], "browse": [], "browse_spawn": [], "avahi_warm": [], "avahi_cold": [], "goodbye": []}
    try:
        for r in range(rounds):
            watcher = helper(2, "mdns-browse", "_peerlink._tcp", "60000", "1000")
            line_json(watcher)
            time.sleep(0.5)
            node = helper(1, "peer-node", f"Bench {r}")
            ready = line_json(node)
            found = line_json(watcher)
            assert found["kind"] == "Found", found
            results["appear"].append(found["unixMs"] - ready["startUnixMs"])

            time.sleep(1.5)  # the announcements are over: browsers must ask
            t0 = time.monotonic()
            browse = helper(2, "mdns-browse", "_peerlink._tcp", "10000", "1")
            line_json(browse)
            hit = line_json(browse)
            results["browse_spawn"].append((time.monotonic() - t0) * 1000)
            results["browse"].append(hit["ms"])
            browse.wait()

            results["avahi_warm"].append(avahi_browse(bus))
            subprocess.run(["bash", LAB, "avahi-stop", "3"], env=ENV, check=True)
            bus = subprocess.run(["bash", LAB, "avahi", "3"], env=ENV, check=True, capture_output=True, text=True).stdout.strip()
            results["avahi_cold"].append(avahi_browse(bus))

            node.stdin.close()
            stopping = line_json(node)["stoppingUnixMs"]
            lost = line_json(watcher)
            assert lost["kind"] == "Lost", lost
            results["goodbye"].append(lost["unixMs"] - stopping)
            node.wait()
            watcher.kill()
            watcher.wait()
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in results.items()), flush=True)
    finally:
        subprocess.run(["bash", LAB, "down"], env=ENV, check=False)

    print(f"\n{rounds} rounds; median / p90 / max in ms")
    for key, values in results.items():
        values = sorted(values)
        p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
        print(f"  {key:13s} {statistics.median(values):7.1f} {p90:7.1f} {values[-1]:7.1f}")


if __name__ == "__main__":
    main()
