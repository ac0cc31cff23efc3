import Features
import FeatureStore
import Foundation
import Streaming
import Testing
import TestSupport

/// A `streamrec` subprocess with output captured to files.
final class StreamrecProcess {
    let process = Process()
    let out: URL, err: URL
    /// Runs after the process is gone (fixtures it depends on, e.g. its Redis).
    var onRelease: (() -> Void)?
    init(_ arguments: [String]) throws {
        guard let bin = streamrecBinary() else { throw FixtureError("streamrec binary not built (swift build)") }
        let dir = FileManager.default.temporaryDirectory
        out = dir.appendingPathComponent("sr-\(UUID().uuidString).out")
        err = dir.appendingPathComponent("sr-\(UUID().uuidString).err")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: bin)
        process.arguments = arguments
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }
    var stdout: String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: err, encoding: .utf8)) ?? "" }
    func signal(_ s: Int32) { kill(process.processIdentifier, s) }
    /// Waits for exit; SIGKILLs after `timeout`. Returns the exit status (nil on timeout).
    func wait(timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit(); return nil }
        return process.terminationStatus
    }
    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: err)
        onRelease?()
    }
}

func committedRows(_ conn: RedisConnection, shards: Int) -> Int64 {
    let commands: [[String]] = (0..<shards).map { ["GET", "sr:rows:\($0)"] }
    let replies: [RedisReply]
    do { replies = try conn.pipeline(commands) } catch { return 0 }
    var total: Int64 = 0
    for r in replies { total += r.integer ?? 0 }
    return total
}

@Suite("featurize as a process: kill -9, SIGTERM, restart", .serialized, .timeLimit(.minutes(5)))
struct FeaturizeProcessTests {
    @Test("kill -9 mid-stream, SIGTERM, restart: every valid row in exactly one batch (mock and noida-db)",
          arguments: KafkaBrokerKind.allCases)
    func killAndRestart(broker kind: KafkaBrokerKind) throws {
        let redis = try RedisServerFixture()
        defer { redis.stop() }
        let cluster = try startBroker(kind, topics: ["kill": 4])
        defer { cluster.stop() }
        var rows = syntheticRows(16_000, seed: 21)
        let stats = statsFor(Array(rows.prefix(4000)))
        for i in stride(from: 97, to: rows.count, by: 211) { rows[i] = Array("bad\trow".utf8) }
        let malformed = Array(stride(from: 97, to: rows.count, by: 211)).count
        try produce(rows, topic: "kill", bootstrap: cluster.bootstrapServers, partitions: 4)
        let statsFile = FileManager.default.temporaryDirectory.appendingPathComponent("kill-\(UUID().uuidString).stats")
        defer { try? FileManager.default.removeItem(at: statsFile) }
        try stats.write(to: statsFile)
        let addr = "127.0.0.1:\(redis.port)"
        let args = ["featurize", "--shard", "0", "--shards", "1", "--topic", "kill", "--bootstrap", cluster.bootstrapServers,
                    "--redis", addr, "--stats", statsFile.path, "--batch-size", "50", "--linger-ms", "50",
                    "--feature-shards", "4", "--progress-seconds", "1"]
        let conn = try RedisConnection(address: addr)

        // 1. kill -9 once some batches are in.
        let first = try StreamrecProcess(args)
        var deadline = ContinuousClock.now + .seconds(60)
        while committedRows(conn, shards: 4) < 1500 && ContinuousClock.now < deadline && first.process.isRunning { Thread.sleep(forTimeInterval: 0.005) }
        first.signal(SIGKILL)
        _ = first.wait(timeout: .seconds(10))
        let afterKill = committedRows(conn, shards: 4)
        #expect(afterKill >= 1500 && afterKill < Int64(rows.count - malformed), "killed mid-stream (\(afterKill) rows committed)")

        // 2. restart, then SIGTERM: clean stop, exit 0, summary printed.
        let second = try StreamrecProcess(args)
        deadline = ContinuousClock.now + .seconds(60)
        while committedRows(conn, shards: 4) < afterKill + 3000 && ContinuousClock.now < deadline && second.process.isRunning { Thread.sleep(forTimeInterval: 0.01) }
        second.signal(SIGTERM)
        let status = second.wait(timeout: .seconds(20))
        #expect(status == 0, "SIGTERM → exit 0; stderr: \(second.stderr.suffix(2000))")
        #expect(second.stdout.contains("summary {"))

        // 3. restart until idle.
        let third = try StreamrecProcess(args + ["--until-idle", "2"])
        #expect(third.wait(timeout: .seconds(120)) == 0, "stderr: \(third.stderr.suffix(2000))")

        let entries = try allBatches(redis: addr, featureShards: 4)
        #expect(entries.reduce(0) { $0 + $1.batch.batch.count } == rows.count - malformed)
        #expect(entries.reduce(0) { $0 + $1.batch.source.rejectedRows } <= malformed)
        #expect(try conn.command(["HGET", "sr:deadletter:count", "wrong_field_count"]).integer == Int64(malformed))
        for p in Int32(0)..<4 {
            let ranges = entries.filter { $0.batch.source.partition == p }.map { ($0.batch.source.firstOffset, $0.batch.source.lastOffset) }
            #expect(coverageProblem(ranges, end: 4000) == nil, "partition \(p)")
            #expect(try conn.command(["GET", "sr:progress:kill:\(p)"]).integer == 4000)
        }
        // Cleanly stopped workers removed their heartbeat; the killed one's remains (and ages).
        let workers = try conn.command(["HLEN", "sr:workers"]).integer
        #expect(workers == 1)
    }
}
