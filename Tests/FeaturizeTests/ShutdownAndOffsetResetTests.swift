// Issue 9: featurize, produce and broker stop on SIGTERM within a bound while Redis or Kafka is
// unreachable; a replaced Kafka cluster (offsets behind the stored progress) is never skipped.
// Real processes (the built binary), real redis-server, the librdkafka mock broker.
import Features
import FeatureStore
import Foundation
import Streaming
import Testing
import TestSupport

/// Writes `rows` as a TSV file (one row per line) and returns its path.
private func rowFile(_ rows: [[UInt8]], in dir: URL) throws -> String {
    let url = dir.appendingPathComponent("rows.tsv")
    var data: [UInt8] = []
    for r in rows { data += r; data.append(0x0A) }
    try Data(data).write(to: url)
    return url.path
}

/// A redis-server process of its own (not a fixture) so a test can SIGTERM it with the others.
private final class RedisProcess {
    let process = Process()
    let port: Int
    let directory: URL
    init() throws {
        port = try freeLoopbackPort()
        directory = try temporaryTestDirectory("redis")
        process.executableURL = URL(fileURLWithPath: try #require(findExecutable("redis-server")))
        process.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory.path, "--save", "", "--appendonly", "no"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let up = poll(for: 10) { (try? RedisConnection(host: "127.0.0.1", port: port, timeout: .seconds(1)).command(["PING"]).text) == "PONG" }
        if !up { throw FixtureError("redis-server on \(port) did not start") }
    }
    var address: String { "127.0.0.1:\(port)" }
    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite("issue 9: bounded stop while Redis or Kafka is down; offset resets", .serialized, .timeLimit(.minutes(5)))
struct ShutdownAndOffsetResetTests {
    /// featurize with the usual test options (progress lines every second, the config file ignored).
    func featurizeArgs(topic: String, bootstrap: String, redis: String, stats: URL, partitions: Int = 8) -> [String] {
        ["featurize", "--shard", "0", "--shards", "1", "--topic", topic, "--bootstrap", bootstrap, "--redis", redis,
         "--stats", stats.path, "--batch-size", "200", "--linger-ms", "100", "--feature-shards", "4", "--progress-seconds", "1"]
    }

    func writeStats(_ rows: [[UInt8]], _ dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("features.stats")
        try statsFor(Array(rows.prefix(2000))).write(to: url)
        return url
    }

    /// Redis, a broker with topic criteo (8 partitions) holding `rows` synthetic rows, a featurize
    /// worker (fixed shard 0/1, plus `extra`) that has committed them all; then the broker is
    /// SIGKILLed. Redis and the directory are cleaned up when the worker is released.
    func workerThenBrokerKilled(rows n: Int, seed: UInt64, extra: [String]) throws -> (StreamrecProcess, BrokerFixture) {
        let dir = try temporaryTestDirectory()
        let redis = try RedisServerFixture()
        let broker = try BrokerFixture(topics: ["criteo": 8])
        let rows = syntheticRows(n, seed: seed)
        let stats = try writeStats(rows, dir)
        try produce(rows, topic: "criteo", bootstrap: broker.bootstrapServers, partitions: 8)
        let conn = try RedisConnection(address: redis.address)
        let worker = try StreamrecProcess(featurizeArgs(topic: "criteo", bootstrap: broker.bootstrapServers,
                                                        redis: redis.address, stats: stats) + extra)
        worker.onRelease = { redis.stop(); try? FileManager.default.removeItem(at: dir) }
        #expect(poll(for: 60) { committedRows(conn, shards: 4) >= Int64(n) }, "ingested before the outage: \(worker.stderr.suffix(1500))")
        kill(broker.process.processIdentifier, SIGKILL)
        broker.process.waitUntilExit()
        return (worker, broker)
    }

    @Test("featurize: broker SIGKILLed mid-stream → outage reported once, SIGTERM exits 0 within 15 s")
    func featurizeBrokerKilled() throws {
        let (worker, broker) = try workerThenBrokerKilled(rows: 8000, seed: 91, extra: ["--until-idle", "60"])
        defer { broker.stop(grace: .seconds(1)) }
        #expect(poll(for: 20) { worker.stderr.contains("Kafka unavailable") }, "outage reported: \(worker.stderr.suffix(1500))")
        let t0 = ContinuousClock.now
        worker.signal(SIGTERM)
        let status = worker.wait(timeout: .seconds(15))
        #expect(status == 0, "exit within 15 s of SIGTERM (took \(ContinuousClock.now - t0)); stderr: \(worker.stderr.suffix(2000))")
        #expect(worker.stderr.components(separatedBy: "Kafka unavailable").count == 2, "one outage line, not a flood")
        #expect(worker.stdout.contains("summary {"))
    }

    @Test("featurize --log-format json, broker SIGKILLed: every stderr line is a JSON object; librdkafka's connection errors are one 'trouble' line, not a flood")
    func featurizeJSONLogsSummariseOutage() throws {
        let (worker, broker) = try workerThenBrokerKilled(rows: 3000, seed: 93, extra: ["--log-format", "json"])
        defer { broker.stop(grace: .seconds(1)) }
        #expect(poll(for: 20) { worker.stderr.contains("Kafka connection trouble") }, "\(worker.stderr.suffix(1500))")
        // librdkafka retries several times a second: over 4 s of outage no second line appears.
        #expect(!poll(for: 4) { worker.stderr.components(separatedBy: "Kafka connection trouble").count > 2 })
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: .seconds(15)) == 0, "\(worker.stderr.suffix(2000))")
        let lines = worker.stderr.split(separator: "\n")
        var objects: [[String: Any]] = []
        for line in lines {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                Issue.record("not a JSON object: \(line)"); continue
            }
            objects.append(o)
        }
        #expect(objects.allSatisfy { $0["time"] is String && $0["level"] is String && $0["component"] is String && $0["message"] is String })
        let worker0 = objects.filter { $0["component"] as? String == "featurize" }
        #expect(!worker0.isEmpty && worker0.allSatisfy { ($0["worker"] as? String)?.hasPrefix("featurize-0of1@") == true },
                "the worker's lines name it: \(worker0.prefix(3))")
        let trouble = objects.filter { ($0["message"] as? String)?.contains("Kafka connection trouble") == true }
        #expect(trouble.count == 1, "one line for the outage: \(trouble)")
        #expect(trouble.first?["component"] as? String == "kafka" && trouble.first?["level"] as? String == "warning")
        #expect(!worker.stderr.contains("|FAIL|"), "no raw librdkafka lines")
        #expect(objects.contains { ($0["message"] as? String)?.hasSuffix("still failing when the process stopped") == true },
                "the outage's count is said at exit")
        #expect(objects.contains { $0["level"] as? String == "warning" && ($0["message"] as? String)?.hasPrefix("Kafka unavailable") == true })
    }

    @Test("featurize: Redis stopped → SIGTERM exits within 15 s, says once that the rest is re-read")
    func featurizeRedisDown() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let redis = try PersistentRedisServer()
        defer { redis.destroy() }
        let cluster = try MockKafkaCluster(brokers: 1)
        defer { cluster.destroy() }
        try cluster.createTopic("criteo", partitions: 8)
        let rows = syntheticRows(6000, seed: 92)
        let stats = try writeStats(rows, dir)
        try produce(Array(rows.prefix(3000)), topic: "criteo", bootstrap: cluster.bootstrapServers, partitions: 8)
        let conn = try RedisConnection(address: redis.address)
        let worker = try StreamrecProcess(featurizeArgs(topic: "criteo", bootstrap: cluster.bootstrapServers,
                                                        redis: redis.address, stats: stats))
        #expect(poll(for: 60) { committedRows(conn, shards: 4) >= 3000 }, "stderr: \(worker.stderr.suffix(1500))")
        redis.stop()
        // Rows keep arriving, so the worker has a unit it cannot commit.
        try produce(Array(rows.suffix(3000)), topic: "criteo", bootstrap: cluster.bootstrapServers, partitions: 8)
        #expect(poll(for: 20) { worker.stderr.contains("Redis unavailable") }, "stderr: \(worker.stderr.suffix(1500))")
        worker.signal(SIGTERM)
        let status = worker.wait(timeout: .seconds(15))
        #expect(status == 0, "stderr: \(worker.stderr.suffix(2000))")
        #expect(worker.stderr.components(separatedBy: "stopping while Redis is unavailable").count == 2,
                "one line says what is left to be re-read: \(worker.stderr.suffix(2000))")
    }

    @Test("produce: broker SIGKILLed → SIGTERM exits 143 within 12 s and counts what was not acknowledged")
    func produceBrokerKilled() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let broker = try BrokerFixture(topics: ["criteo": 8])
        defer { broker.stop(grace: .seconds(1)) }
        let path = try rowFile(syntheticRows(20_000, seed: 93), in: dir)
        let producer = try StreamrecProcess(["produce", "--config", "/dev/null", "--data", path, "--topic", "criteo",
                                             "--bootstrap", broker.bootstrapServers, "--rate", "4000"])
        #expect(poll(for: 20) { producer.stderr.contains("→ topic criteo") }, "started: \(producer.stderr)")
        kill(broker.process.processIdentifier, SIGKILL)
        broker.process.waitUntilExit()
        let t0 = ContinuousClock.now
        producer.signal(SIGTERM)
        let status = producer.wait(timeout: .seconds(12))
        #expect(status == 128 + SIGTERM, "exit within 12 s (took \(ContinuousClock.now - t0)); stderr: \(producer.stderr.suffix(1500))")
        #expect(producer.stderr.contains("SIGTERM: stopped after"))
        #expect(producer.stdout.contains("\"interrupted\":\"SIGTERM\""))
    }

    @Test("redis, broker, featurize and produce all get SIGTERM at once: each exits within 15 s")
    func everythingAtOnce() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let redis = try RedisProcess()
        let broker = try BrokerFixture(topics: ["criteo": 8])
        defer { broker.stop(grace: .seconds(1)) }
        let rows = syntheticRows(20_000, seed: 94)
        let stats = try writeStats(rows, dir)
        let path = try rowFile(rows, in: dir)
        let producer = try StreamrecProcess(["produce", "--config", "/dev/null", "--data", path, "--topic", "criteo",
                                             "--bootstrap", broker.bootstrapServers, "--rate", "4000"])
        let worker = try StreamrecProcess(featurizeArgs(topic: "criteo", bootstrap: broker.bootstrapServers,
                                                        redis: redis.address, stats: stats) + ["--until-idle", "60"])
        let conn = try RedisConnection(address: redis.address)
        #expect(poll(for: 60) { committedRows(conn, shards: 4) >= 2000 }, "stderr: \(worker.stderr.suffix(1500))")
        let pids = [redis.process.processIdentifier, broker.process.processIdentifier,
                    worker.process.processIdentifier, producer.process.processIdentifier]
        for pid in pids { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(15)
        // Ours must stop; redis-server is SIGTERMed too (as on a host shutdown) but its exit is not
        // ours to assert (a test thread's blocked signal mask may be inherited by it).
        let all = [("broker", broker.process), ("featurize", worker.process), ("produce", producer.process)]
        for (name, p) in all {
            while p.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
            #expect(!p.isRunning, "\(name) still running 15 s after SIGTERM; featurize: \(worker.stderr.suffix(1500))")
        }
        for (_, p) in all where p.isRunning { kill(p.processIdentifier, SIGKILL) }
    }

    @Test("a second SIGTERM exits at once, while the first stop still waits for an unreachable broker")
    func secondSignal() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let broker = try BrokerFixture(topics: ["criteo": 8])
        defer { broker.stop(grace: .seconds(1)) }
        let path = try rowFile(syntheticRows(5000, seed: 95), in: dir)
        let producer = try StreamrecProcess(["produce", "--config", "/dev/null", "--data", path, "--topic", "criteo",
                                             "--bootstrap", broker.bootstrapServers, "--rate", "2000"])
        #expect(poll(for: 20) { producer.stderr.contains("→ topic criteo") }, "started: \(producer.stderr)")
        kill(broker.process.processIdentifier, SIGKILL)
        broker.process.waitUntilExit()
        producer.signal(SIGTERM)
        // The first stop waits (≤ 5 s) for deliveries that cannot come; signals sent back to back
        // could merge into one, so the second goes once the first is being handled.
        #expect(!poll(for: 1) { !producer.process.isRunning }, "still flushing after the first SIGTERM")
        producer.signal(SIGTERM)
        let status = producer.wait(timeout: .seconds(2))
        #expect(status == 128 + SIGTERM, "stderr: \(producer.stderr.suffix(1500))")
        #expect(producer.stderr.contains("second SIGTERM received: exiting at once"))
    }

    @Test("Kafka cluster replaced (offsets behind the stored progress): stop and say so by default; the flag re-reads from earliest; nothing skipped")
    func offsetReset() throws {
        let dir = try temporaryTestDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let address = "127.0.0.1:\(redis.port)"
        let conn = try RedisConnection(address: address)
        let rows = syntheticRows(6000, seed: 96)
        let stats = try writeStats(rows, dir)

        // Run 1 on the first cluster: progress 1000 on each of 4 partitions.
        let first = try MockKafkaCluster(brokers: 1)
        try first.createTopic("criteo", partitions: 4)
        try produce(Array(rows.prefix(4000)), topic: "criteo", bootstrap: first.bootstrapServers, partitions: 4)
        var args = featurizeArgs(topic: "criteo", bootstrap: first.bootstrapServers, redis: address, stats: stats)
        let run1 = try StreamrecProcess(args + ["--until-idle", "1.5"])
        #expect(run1.wait(timeout: .seconds(60)) == 0, "stderr: \(run1.stderr.suffix(1500))")
        first.destroy()
        for p in 0..<4 { #expect(try conn.command(["GET", "sr:progress:criteo:\(p)"]).integer == 1000) }

        // A new cluster whose offsets start at 0 again: 500 rows per partition.
        let second = try MockKafkaCluster(brokers: 1)
        defer { second.destroy() }
        try second.createTopic("criteo", partitions: 4)
        try produce(Array(rows.suffix(2000)), topic: "criteo", bootstrap: second.bootstrapServers, partitions: 4)
        args = featurizeArgs(topic: "criteo", bootstrap: second.bootstrapServers, redis: address, stats: stats)

        // Default: stop, exit 3, name the partitions, their progress, the watermarks and the flag.
        let run2 = try StreamrecProcess(args + ["--until-idle", "1.5"])
        #expect(run2.wait(timeout: .seconds(30)) == 3, "stderr: \(run2.stderr.suffix(2000))")
        #expect(run2.stderr.contains("OFFSET RESET"))
        #expect(run2.stderr.contains("criteo/0: stored progress 1000, broker low 0 high 500"), "stderr: \(run2.stderr.suffix(2000))")
        #expect(run2.stderr.contains("--on-offset-reset restart-from-earliest"))
        #expect(committedRows(conn, shards: 4) == 4000, "nothing of the new cluster was taken")
        for p in 0..<4 {
            #expect(try conn.command(["GET", "sr:progress:criteo:\(p)"]).integer == 1000)
            #expect(try conn.command(["HGET", "sr:offsetreset:detected", "criteo:\(p)"]).integer == 1)
        }

        // Opt-in: progress back to the broker's earliest offset, every row of the new cluster read.
        let run3 = try StreamrecProcess(args + ["--until-idle", "1.5", "--on-offset-reset", "restart-from-earliest"])
        #expect(run3.wait(timeout: .seconds(60)) == 0, "stderr: \(run3.stderr.suffix(2000))")
        #expect(committedRows(conn, shards: 4) == 6000, "all 2000 rows of the new cluster ingested, none skipped")
        for p in 0..<4 {
            #expect(try conn.command(["GET", "sr:progress:criteo:\(p)"]).integer == 500)
            #expect(try conn.command(["HGET", "sr:offsetreset:applied", "criteo:\(p)"]).integer == 1)
        }
        #expect(run3.stderr.contains("progress moved back 1000 → 0"))

        // status shows it.
        let status = try runProcess(try #require(streamrecBinary()), ["status", "--redis", address])
        #expect(status.status == 0)
        #expect(status.stdout.contains("OFFSET RESET criteo:0: detected 2×, progress reset to earliest 1×"), "\(status.stdout)")
    }
}
