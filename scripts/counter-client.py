#!/usr/bin/env python3
"""Client for the guest's counter service (guest/linux/init/counter.c, port 7777).

Protocol: one request line, one reply line: `inc` -> new value, `get` -> value,
`reboot` -> `ok` (mode=disk only), anything else -> `err`.

  scripts/counter-client.py --port 17777                     # 10 x inc, values + latency
  scripts/counter-client.py --requests 2000 --quiet          # sequential throughput
  scripts/counter-client.py --connections 4 --requests 500   # 4 concurrent connections
  scripts/counter-client.py --command get --requests 1       # read the value
  scripts/counter-client.py --check                          # inc values must increase
  scripts/counter-client.py --protocol-test                  # edge cases (split lines...)
  scripts/counter-client.py --wait 30 ...                    # wait for the guest first

With QEMU user networking, forward a host port to the guest:
  -netdev user,id=n0,hostfwd=tcp:127.0.0.1:17777-:7777 -device virtio-net-device,netdev=n0

Every socket operation has a timeout (--timeout); the total number of requests is capped
(MAX_TOTAL). Exit status: 0 if every request got a well-formed reply (and the checks held),
1 otherwise, 2 on bad arguments. Reply values go to stdout, the summary to stderr
(to stdout with --quiet, where it is the only output).
"""
import argparse
import socket
import sys
import threading
import time

MAX_TOTAL = 1_000_000  # requests over all connections
MAX_CONNECTIONS = 256  # the server's limit; more would wait in its backlog


class Conn:
    """One connection with a line reader; every operation bounded by `timeout`."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        """The next reply line without '\\n'; None if the server closed the connection."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buf += chunk
            if len(self.buf) > 4096 and b"\n" not in self.buf:
                raise ValueError("reply line too long")
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("ascii", "replace")

    def request(self, cmd):
        self.send(cmd.encode() + b"\n")
        return self.line()

    def close(self):
        self.sock.close()


def connect(args, deadline, attempts=5):
    """A connection that has answered one `get`.

    QEMU 7.2's user networking (libslirp 4.7) listens for hostfwd with a backlog of 1; when
    several connections arrive at once the host kernel falls back to SYN cookies and the
    first bytes a client sends can vanish before they reach the guest (seen in a packet
    dump of the guest side: the stream starts at "et\n" instead of "get\n"). A `get` probe,
    retried on a fresh connection, keeps that away from the requests that count.
    Connection failures are retried until `deadline` (time.monotonic(); see --wait)."""
    for attempt in range(attempts):
        try:
            c = Conn(args.host, args.port, args.timeout)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
            continue
        try:
            c.sock.settimeout(min(1.0, args.timeout))
            reply = c.request("get")
            if reply is not None and reply.isdigit():
                c.sock.settimeout(args.timeout)
                return c
        except (OSError, ValueError):
            pass
        c.close()
    raise OSError(f"no working connection to {args.host}:{args.port} in {attempts} attempts")


def wait_until_serving(args):
    """--wait: poll with `get` until the service answers. A successful connect proves
    nothing with QEMU's hostfwd (slirp accepts on the host before the guest listens)."""
    deadline = time.monotonic() + args.wait
    while True:
        try:
            probe = Conn(args.host, args.port, min(1.0, args.timeout))
            try:
                if probe.request("get") is not None:
                    return True
            finally:
                probe.close()
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            print(f"error: no reply from {args.host}:{args.port} within {args.wait} s",
                  file=sys.stderr)
            return False
        time.sleep(0.2)


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def run_connection(args, index, c, results, lock):
    lat, values, errors = [], [], []
    try:
        for _ in range(args.requests):
            t0 = time.perf_counter()
            reply = c.request(args.command)
            lat.append(time.perf_counter() - t0)
            if reply is None:
                errors.append(f"connection {index}: closed by the server")
                break
            values.append(reply)
            if not args.quiet:
                with lock:
                    print(f"[{index}] {args.command} -> {reply}" if args.connections > 1
                          else reply, flush=True)
    except (OSError, ValueError) as e:
        errors.append(f"connection {index}: {e}")
    finally:
        c.close()
    with lock:
        results.append((index, lat, values, errors))


def check_values(args, results):
    """inc replies: numbers, strictly increasing per connection, all distinct."""
    problems = []
    seen = []
    for index, _, values, _ in results:
        try:
            nums = [int(v) for v in values]
        except ValueError:
            problems.append(f"connection {index}: non-numeric reply in {values[:5]}...")
            continue
        if any(b <= a for a, b in zip(nums, nums[1:])):
            problems.append(f"connection {index}: values do not increase")
        if args.connections == 1 and any(b != a + 1 for a, b in zip(nums, nums[1:])):
            problems.append(f"connection {index}: values are not consecutive")
        seen += nums
    if len(seen) != len(set(seen)):
        problems.append("the same value was handed out twice")
    elif args.connections > 1 and seen and max(seen) - min(seen) + 1 != len(seen):
        problems.append("values over all connections are not one consecutive range")
    return problems


def protocol_test(args):
    """Edge cases of the line protocol; returns a list of failures."""
    failures = []
    deadline = time.monotonic() + args.wait

    def expect(what, got, want):
        ok = want(got) if callable(want) else got == want
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {got!r}")
        if not ok:
            failures.append(what)

    a = connect(args, deadline)
    b = connect(args, deadline)
    base = int(a.request("get"))
    expect("inc", a.request("inc"), str(base + 1))
    expect("get", a.request("get"), str(base + 1))
    expect("inc on a 2nd connection", b.request("inc"), str(base + 2))
    expect("inc back on the 1st", a.request("inc"), str(base + 3))
    expect("unknown command", a.request("frob"), "err")
    expect("empty line", a.request(""), "err")
    expect("CRLF line", a.request("get\r"), str(base + 3))
    a.send(b"i")
    time.sleep(0.05)
    a.send(b"n")
    time.sleep(0.05)
    a.send(b"c\n")
    expect("line split over 3 sends", a.line(), str(base + 4))
    a.send(b"inc\ninc\nget\nbad\n")
    got = [a.line() for _ in range(4)]
    expect("4 requests in one send", got, [str(base + 5), str(base + 6), str(base + 6), "err"])
    # A client that pipelines many requests before reading is throttled, not dropped.
    a.send(b"get\n" * 3000)
    got = [a.line() for _ in range(3000)]
    expect("3000 pipelined gets", len(got) == 3000 and set(got) == {str(base + 6)}, True)
    # The same, then end of input: every complete request still gets its reply.
    f = connect(args, deadline)
    f.send(b"get\n" * 3000)
    f.sock.shutdown(socket.SHUT_WR)
    got = [f.line() for _ in range(3001)]
    expect("3000 pipelined gets, then half-close",
           got[-1] is None and set(got[:-1]) == {str(base + 6)}, True)
    f.close()
    # Disconnect in the middle of a line: the partial request must not count.
    c = connect(args, deadline)
    c.send(b"in")
    c.close()
    d = connect(args, deadline)
    d.send(b"inc\ninc")  # one whole request, then a partial one, then EOF
    d.sock.shutdown(socket.SHUT_WR)
    expect("reply after half-close", d.line(), str(base + 7))
    expect("partial line at EOF dropped, connection closed", d.line(), None)
    d.close()
    time.sleep(0.1)
    expect("get after mid-line disconnects", b.request("get"), str(base + 7))
    # A line over 4 KiB: `err`, then the server closes the connection.
    e = connect(args, deadline)
    try:
        e.send(b"x" * 5000)
        expect("over-long line", e.line(), "err")
        expect("then closed", e.line(), None)
    except OSError as ex:  # a reset can beat the reply; still a close
        expect("over-long line (reset)", str(ex), lambda s: True)
    e.close()
    expect("server still serves", b.request("get"), str(base + 7))
    a.close()
    b.close()
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=17777,
                    help="default 17777 (the hostfwd port in guest/linux/README.md)")
    ap.add_argument("--requests", "-n", type=int, default=10, help="per connection")
    ap.add_argument("--connections", "-c", type=int, default=1)
    ap.add_argument("--command", default="inc", help="request line (default inc)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds, per socket op")
    ap.add_argument("--wait", type=float, default=0.0,
                    help="first wait up to this many seconds for the service to answer a "
                         "`get` (guest still booting)")
    ap.add_argument("--quiet", "-q", action="store_true", help="summary only")
    ap.add_argument("--check", action="store_true",
                    help="inc replies must be increasing numbers, distinct over connections")
    ap.add_argument("--protocol-test", action="store_true",
                    help="run the protocol edge-case checks (changes the counter)")
    args = ap.parse_args()
    if args.requests < 0 or not 1 <= args.connections <= MAX_CONNECTIONS:
        ap.error(f"need --requests >= 0 and 1 <= --connections <= {MAX_CONNECTIONS}")
    if args.requests * args.connections > MAX_TOTAL:
        ap.error(f"at most {MAX_TOTAL} requests in total")
    if args.timeout <= 0:
        ap.error("--timeout must be positive")

    if args.wait > 0 and not wait_until_serving(args):
        return 1
    if args.protocol_test:
        try:
            failures = protocol_test(args)
        except (OSError, ValueError, TypeError) as e:
            failures = [f"exception: {e!r}"]
        print("protocol test:", "ok" if not failures else f"FAILED: {failures}")
        return 0 if not failures else 1

    results, lock = [], threading.Lock()
    deadline = time.monotonic() + args.wait
    # Connect one after the other (the hostfwd listener has a backlog of 1), then start
    # all request loops together; connection setup is not part of the measurement.
    conns = []
    try:
        for _ in range(args.connections):
            conns.append(connect(args, deadline))
    except OSError as e:
        print(f"error: connect: {e}", file=sys.stderr)
        for c in conns:
            c.close()
        return 1
    threads = [threading.Thread(target=run_connection, args=(args, i, c, results, lock),
                                daemon=True) for i, c in enumerate(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    # Every op is bounded by --timeout, so this join is bounded too; belt and braces:
    limit = args.timeout * (args.requests * 2 + 2)
    for t in threads:
        t.join(max(0.0, limit - (time.perf_counter() - t0)))
    elapsed = time.perf_counter() - t0
    if any(t.is_alive() for t in threads):
        print("error: connections still running after the time limit", file=sys.stderr)
        return 1

    lat = sorted(x for r in results for x in r[1])
    errors = [e for r in results for e in r[3]]
    done = sum(len(r[2]) for r in results)
    if args.check and args.command == "inc":
        errors += check_values(args, sorted(results))
    for e in errors:
        print("error:", e, file=sys.stderr)
    rate = done / elapsed if elapsed > 0 else 0.0
    print(f"{done} requests over {args.connections} connection(s) in {elapsed:.3f} s: "
          f"{rate:.0f} req/s; latency p50 {percentile(lat, 50) * 1e3:.3f} ms, "
          f"p99 {percentile(lat, 99) * 1e3:.3f} ms, max {(lat[-1] if lat else 0) * 1e3:.3f} ms",
          file=sys.stderr if not args.quiet else sys.stdout)
    return 1 if errors or done != args.requests * args.connections else 0


if __name__ == "__main__":
    sys.exit(main())
