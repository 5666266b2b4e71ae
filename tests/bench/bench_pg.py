"""A private PostgreSQL 15 cluster for the benchmarks in tests/bench (not a test helper).

    with PgCluster(workdir) as pg:
        url = pg.create_database("store1")     # postgresql://relay@127.0.0.1:PORT/store1
        ref = pg.pgbench_simple_update(pg.pgbench_init(), clients=8, seconds=5)

initdb in a fresh directory (as the unprivileged "postgres" user when run as root: the server
refuses root), trust authentication on 127.0.0.1 only, a free loopback port, the socket in the
cluster's own directory. fsync and synchronous_commit stay on (the server defaults): the
figures are for durable commits unless a connection asks otherwise. Stopped (fast) on exit.
"""
import os
import re
import shutil
import socket
import subprocess

PG_BIN_DEFAULT = "/usr/lib/postgresql/15/bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


class PgCluster:
    def __init__(self, workdir, pg_bin=PG_BIN_DEFAULT, user="relay"):
        self.pg_bin = pg_bin
        self.user = user
        self.dir = os.path.join(workdir, "pg")
        self.data = os.path.join(self.dir, "data")
        self.port = None
        self.started = False
        if not os.access(os.path.join(pg_bin, "pg_ctl"), os.X_OK):
            raise RuntimeError("%s/pg_ctl not found: install postgresql-15 "
                               "(deploy/install-deps --postgres)" % pg_bin)

    def _as_pg(self, argv):
        return ["runuser", "-u", "postgres", "--"] + argv if os.geteuid() == 0 else argv

    def bin(self, name):
        return os.path.join(self.pg_bin, name)

    def __enter__(self):
        os.makedirs(self.dir)
        if os.geteuid() == 0:
            # The server's user must reach the directory: every parent searchable, ours its own.
            parent = os.path.dirname(self.dir)
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
            shutil.chown(self.dir, "postgres", "postgres")
        log = os.path.join(self.dir, "initdb.log")
        with open(log, "w") as f:
            r = subprocess.run(self._as_pg([self.bin("initdb"), "-D", self.data, "-A", "trust",
                                            "-U", self.user, "-E", "UTF8", "--no-locale"]),
                               stdout=f, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError("initdb failed; see " + log)
        self.port = free_port()
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200" % (
            self.port, self.dir)
        r = subprocess.run(self._as_pg([self.bin("pg_ctl"), "-D", self.data, "-o", opts, "-l",
                                        os.path.join(self.dir, "server.log"), "-w", "-t", "60",
                                        "start"]), stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError("PostgreSQL did not start; see %s/server.log" % self.dir)
        self.started = True
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        if self.started:
            self.started = False
            subprocess.run(self._as_pg([self.bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w",
                                        "-t", "60", "stop"]), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)

    def _client_args(self):
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]

    def create_database(self, name):
        subprocess.run([self.bin("createdb")] + self._client_args() + [name], check=True)
        return "postgresql://%s@127.0.0.1:%d/%s" % (self.user, self.port, name)

    def pgbench_init(self, db="pgbench", scale=10):
        """A database with pgbench's tables (pgbench -i)."""
        self.create_database(db)
        subprocess.run([self.bin("pgbench"), "-i", "-q", "-s", str(scale)] + self._client_args()
                       + [db], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return db

    def pgbench_simple_update(self, db, clients, seconds, synchronous_commit="on"):
        """pgbench's built-in simple-update (UPDATE + SELECT + INSERT, one commit) on db (made
        by pgbench_init); returns {"tps":..,"p50_ms":..,"p99_ms":..} from the per-transaction
        log."""
        self.runs = getattr(self, "runs", 0) + 1
        prefix = os.path.join(self.dir, "pgbench_log_%d" % self.runs)
        env = dict(os.environ, PGOPTIONS="-c synchronous_commit=%s" % synchronous_commit)
        out = subprocess.run([self.bin("pgbench"), "-b", "simple-update", "-c", str(clients),
                              "-j", str(min(clients, 2)), "-T", str(int(seconds)), "-l",
                              "--log-prefix=" + prefix] + self._client_args() + [db],
                             capture_output=True, text=True, env=env, check=True)
        m = re.search(r"^tps = ([0-9.]+)", out.stdout, re.M)
        if not m:
            raise RuntimeError("pgbench printed no tps:\n" + out.stdout + out.stderr)
        lat = []
        for f in os.listdir(self.dir):
            if f.startswith(os.path.basename(prefix) + "."):
                with open(os.path.join(self.dir, f)) as lf:
                    lat += [int(line.split()[2]) / 1000.0 for line in lf if line.strip()]
        lat.sort()
        return {"tps": float(m.group(1)), "p50_ms": percentile(lat, 0.50),
                "p99_ms": percentile(lat, 0.99), "transactions": len(lat)}
