import Testing
import Foundation
import TestSupport
import FeatureStore

/// Three hosts on one machine (network namespaces, a bridge): Redis, the broker and `serve` on
/// host 1, a featurize worker on hosts 2 and 3, `mpirun` across hosts 2 and 3 under
/// `streamrec supervise`. The demo's flow runs through it; then host 3's cable is pulled and
/// plugged back in: every row exactly once, the trainer restarted by the supervisor on the host
/// left, the server serving throughout.
@Suite(.serialized) struct MultiHostTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized

    /// Redis on host 1 takes connections from the other hosts, so it has a password; every
    /// command reads it from this file (never from its command line).
    static let passwordFile = FileManager.default.temporaryDirectory.appendingPathComponent("multihost-\(getpid()).password")

    /// `streamrec status --json`, asked on host 1.
    func status(_ hosts: TestHosts, _ bin: String) throws -> FeatureStoreStatus {
        let r = try hosts.run(1, [bin, "status", "--redis", "10.77.0.1:6379", "--redis-password-file", Self.passwordFile.path, "--json"],
                              timeout: .seconds(30))
        guard r.status == 0 else { throw FixtureError("status failed: \(r.stderr)") }
        return try JSONDecoder().decode(FeatureStoreStatus.self, from: Data(r.stdout.utf8))
    }

    func owners(_ s: FeatureStoreStatus) -> [String: Int] {
        var out: [String: Int] = [:]
        for p in s.partitions { if let o = p.owner { out[o, default: 0] += 1 } }
        return out
    }

    @Test(.enabled(if: TestHosts.available || ProcessInfo.processInfo.environment["STREAMREC_REQUIRE_NETNS"] == "1",
                   "needs network namespaces (root or CAP_NET_ADMIN and iproute2): skipped on this machine"),
          .timeLimit(.minutes(8)))
    func threeHostsOneCutOffAndBack() throws {
        try #require(TestHosts.available, "STREAMREC_REQUIRE_NETNS=1 but network namespaces cannot be created here")
        let bin = try #require(streamrecBinary())
        let mpirun = try #require(findExecutable("mpirun"))
        let socat = try #require(findExecutable("socat"), "socat not installed (scripts/setup.sh)")
        let redisServer = try #require(findExecutable("redis-server"))
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let hosts = try TestHosts(count: 3, repository: Self.repository)
        defer { hosts.destroy() }
        func log(_ name: String) -> URL { dir.appendingPathComponent("\(name).log") }
        let env = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                   "OMPI_MCA_oob_tcp_if_include": "10.77.0.0/24", "OMPI_MCA_btl_tcp_if_include": "10.77.0.0/24", "OMPI_MCA_btl": "self,tcp"]

        // Host 1: Redis, the broker (the mock listens on loopback only, so a relay on each host
        // carries its port across the bridge, like a tunnel), serve.
        let password = "multi-host-\(UInt64.random(in: 1...UInt64.max))"
        try password.write(to: Self.passwordFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: Self.passwordFile) }
        _ = try hosts.start(1, [redisServer, "--bind", "10.77.0.1", "--port", "6379", "--dir", dir.path, "--save", "",
                                "--appendonly", "no", "--requirepass", password], log: log("redis"))
        let bootstrapFile = dir.appendingPathComponent("bootstrap")
        _ = try hosts.start(1, [bin, "broker", "--brokers", "1", "--topic", "criteo", "--partitions", "4",
                                "--bootstrap-file", bootstrapFile.path], log: log("broker"))
        #expect(poll(for: 30) { ((try? String(contentsOf: bootstrapFile, encoding: .utf8)) ?? "").contains(":") })
        let bootstrap = try String(contentsOf: bootstrapFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let port = try #require(bootstrap.split(separator: ":").last.map(String.init))
        _ = try hosts.start(1, [socat, "TCP-LISTEN:\(port),bind=10.77.0.1,fork,reuseaddr", "TCP:127.0.0.1:\(port)"], log: log("relay-1"))
        for h in [2, 3] {
            _ = try hosts.start(h, [socat, "TCP-LISTEN:\(port),bind=127.0.0.1,fork,reuseaddr", "TCP:10.77.0.1:\(port)"], log: log("relay-\(h)"))
        }
        #expect(poll(for: 30) { (try? hosts.run(1, ["redis-cli", "-h", "10.77.0.1", "PING"], environment: ["REDISCLI_AUTH": password]).stdout.contains("PONG")) ?? false })

        // Data: three parts produced over the test; statistics from the first.
        var parts: [URL] = []
        for (k, rows) in [4_000, 3_000, 2_000].enumerated() {
            let f = dir.appendingPathComponent("rows-\(k).tsv")
            let r = try runProcess(bin, ["gen", "criteo", "--rows", "\(rows)", "--seed", "\(40 + k)", "--out", f.path])
            try #require(r.status == 0, "\(r.stderr)")
            parts.append(f)
        }
        let stats = dir.appendingPathComponent("features.stats")
        try #require(try runProcess(bin, ["stats", "--data", parts[0].path, "--out", stats.path, "--min-frequency", "2"]).status == 0)
        func produce(_ k: Int) throws {
            let r = try hosts.run(1, [bin, "produce", "--data", parts[k].path, "--topic", "criteo", "--bootstrap", bootstrap])
            try #require(r.status == 0, "produce part \(k): \(r.stderr)")
        }

        let ck = dir.appendingPathComponent("checkpoints")
        _ = try hosts.start(1, [bin, "serve", "--checkpoints", ck.path, "--host", "10.77.0.1", "--port", "8080", "--no-feature-store"],
                            log: log("serve"))
        // Workers on hosts 2 and 3 share the partitions by lease.
        let featurize = try [2, 3].map { h in
            try hosts.start(h, [bin, "featurize", "--topic", "criteo", "--bootstrap", bootstrap, "--redis", "10.77.0.1:6379",
                                "--redis-password-file", Self.passwordFile.path,
                                "--stats", stats.path, "--batch-size", "100", "--linger-ms", "100", "--feature-shards", "4"],
                            log: log("featurize-\(h)"))
        }
        // The trainer: mpirun across hosts 2 and 3 (daemons started inside the hosts by a launch
        // agent), supervised from host 2; keepalives let mpirun notice a host gone within seconds.
        let hostfile = dir.appendingPathComponent("hosts")
        try "10.77.0.2 slots=1\n10.77.0.3 slots=1\n".write(to: hostfile, atomically: true, encoding: .utf8)
        let agent = dir.appendingPathComponent("agent.sh")
        try hosts.writeLaunchAgent(to: agent)
        let config = Self.repository.appendingPathComponent("configs/widedeep.yaml").path
        let trainer = try hosts.start(2, [bin, "supervise", "--hostfile", hostfile.path, "--probe", "ping -c 1 -W 1 {host}",
                                          "--initial-backoff", "1", "--", mpirun, "--hostfile", "{hostfile}", "-np", "{np}",
                                          "--mca", "plm_rsh_agent", agent.path,
                                          "--mca", "oob_tcp_keepalive_time", "3", "--mca", "oob_tcp_keepalive_intvl", "2",
                                          "--mca", "oob_tcp_keepalive_probes", "3",
                                          bin, "train", "--source", "redis", "--redis", "10.77.0.1:6379",
                                          "--redis-password-file", Self.passwordFile.path, "--config", config,
                                          "--preset", "small", "--stats", stats.path, "--feature-shards", "4",
                                          "--checkpoint-dir", ck.path, "--checkpoint-every", "5", "--keep", "3", "--log-every", "5",
                                          "--peer-timeout", "20"],
                                      environment: env, log: log("train"))

        // The server is asked every 200 ms from host 1 throughout; once it has a model, every answer must be 200.
        let serving = ServingProbe(hosts: hosts, url: "http://10.77.0.1:8080/v1/model")
        defer { serving.stop() }

        func settled(rows: Int, owners expected: Int) throws -> Bool {
            let s = try status(hosts, bin)
            return s.partitions.reduce(0) { $0 + $1.progress } == Int64(rows) && s.shards.reduce(0) { $0 + $1.rows } == Int64(rows)
                && s.shards.allSatisfy { $0.pending == 0 } && owners(s).count == expected
        }
        // 1. The demo's flow across hosts 2 and 3.
        try produce(0)
        #expect(try poll(for: 120) { try settled(rows: 4_000, owners: 2) },
                "\(String(describing: try? status(hosts, bin))) \(trainer.output.suffix(2000)) \(featurize[0].output.suffix(1000))")
        #expect(owners(try status(hosts, bin)).values.sorted() == [2, 2], "each worker holds 2 of 4 partitions")
        #expect(trainer.output.contains("starting the job (start 1)") && !trainer.output.contains("start 2)"))
        #expect(poll(for: 60) { serving.ok > 0 }, "serve loaded a version: \(serving.codes.suffix(5))")

        // 2. Host 3's cable out: its worker's partitions move to host 2, the job ends and the
        // supervisor restarts it on host 2 alone; more rows arrive meanwhile.
        let cutAt = ContinuousClock.now
        try hosts.cut(3)
        try produce(1)
        #expect(try poll(for: 120) { try settled(rows: 7_000, owners: 1) },
                "\(String(describing: try? status(hosts, bin))) \(trainer.output.suffix(3000))")
        let recovered = ContinuousClock.now - cutAt
        #expect(trainer.output.contains("left out of this start: 10.77.0.3"), "\(trainer.output.suffix(3000))")
        #expect(trainer.output.contains("starting the job (start 2)"))

        // 3. Cable back in: host 3's worker learns it lost its leases, rejoins and gets its share back.
        try hosts.mend(3)
        #expect(try poll(for: 60) { owners(try status(hosts, bin)).values.sorted() == [2, 2] }, "\(featurize[1].output.suffix(2000))")
        #expect(featurize[1].output.contains("LEASE LOST"))
        try produce(2)
        #expect(try poll(for: 120) { try settled(rows: 9_000, owners: 2) }, "\(trainer.output.suffix(2000))")

        // 4. Stop: final checkpoint trained every row exactly once; the server never failed once it served.
        kill(trainer.pid, SIGTERM)
        #expect(trainer.waitForExit(within: 60), "\(trainer.output.suffix(2000))")
        #expect(trainer.exitStatus == 0, "\(trainer.output.suffix(3000))")
        for w in featurize { kill(w.pid, SIGTERM); #expect(w.waitForExit(within: 30) && w.exitStatus == 0, "\(w.output.suffix(1000))") }
        let latest = try String(contentsOf: ck.appendingPathComponent("LATEST"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: ck.appendingPathComponent("\(latest)/manifest.json"))) as? [String: Any])
        #expect(manifest["samples_trained"] as? Int == 9_000)
        let s = try status(hosts, bin)
        #expect(s.lostUpstream.values.reduce(0, +) == 0 && s.deadLettersTotal == 0)
        serving.stop()
        #expect(serving.failuresAfterFirstOK == 0, "serve answered non-200 after serving: \(serving.codes.suffix(20))")
        let ended = trainer.output.split(separator: "\n").first { $0.contains("ended abnormally") }.map(String.init) ?? "?"
        print(String(format: "MULTI-HOST FIGURES: host 3 cut off → every row featurized and trained on host 2 alone %.1f s later; "
                     + "rows produced 9000, trained 9000, lost 0, duplicated 0; serve: %d answers, %d non-200 after the first 200; %@",
                     Double(recovered.components.seconds) + Double(recovered.components.attoseconds) / 1e18,
                     serving.codes.count, serving.failuresAfterFirstOK, ended))
    }
}

/// Asks an HTTP URL from host 1 every 200 ms on its own thread and keeps the status codes.
final class ServingProbe: @unchecked Sendable {
    private let lock = NSLock()
    private var _codes: [Int] = []
    private var running = true
    private let done = DispatchSemaphore(value: 0)

    init(hosts: TestHosts, url: String) {
        let thread = Thread { [self] in
            while lock.withLock({ running }) {
                let r = try? hosts.run(1, ["curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", url], timeout: .seconds(5))
                let code = Int(r?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
                lock.withLock { _codes.append(code) }
                Thread.sleep(forTimeInterval: 0.2)
            }
            done.signal()
        }
        thread.start()
    }

    var codes: [Int] { lock.withLock { _codes } }
    var ok: Int { codes.filter { $0 == 200 }.count }
    /// Answers other than 200 after the first 200 (before it: no version yet, 503 by design).
    var failuresAfterFirstOK: Int {
        let c = codes
        guard let first = c.firstIndex(of: 200) else { return 0 }
        return c[first...].filter { $0 != 200 }.count
    }

    func stop() {
        let wasRunning = lock.withLock { () -> Bool in defer { running = false }; return running }
        if wasRunning { done.wait() }
    }
}
