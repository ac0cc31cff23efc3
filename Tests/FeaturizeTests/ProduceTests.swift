// `streamrec produce` end to end against librdkafka's mock broker (and, for the round trips,
// noida-db too), plus its pure parts.
import Features
import Foundation
import Streaming
import Testing
import TestSupport

private func tempDir() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-produce-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// 5,000 synthetic Criteo rows, a header-looking first line, malformed lines, no final newline.
private func writeRows(_ url: URL, rows: Int = 5_000) throws -> [[UInt8]] {
    var lines: [[UInt8]] = [Array("label\tI1\tI2\tI3\tC1\tC2".utf8)]   // looks like a header: it is data
    var gen = SyntheticCriteo(seed: 7)
    for i in 0 ..< rows {
        lines.append(gen.nextRow().line)
        switch i {
        case 100: lines.append([])                                   // empty line
        case 200: lines.append(Array("1\tonly\tthree".utf8))            // wrong field count
        case 300: lines.append(Array("0\t1\t2\r".utf8))                 // CRLF remnant
        case 400: lines.append([0xFF, 0xFE, 0x09, 0x00, 0x41])          // invalid UTF-8 and a NUL
        default: break
        }
    }
    lines.append(Array("last line without newline".utf8))
    var data: [UInt8] = []
    for (i, l) in lines.enumerated() { data += l; if i + 1 < lines.count { data.append(0x0A) } }
    try Data(data).write(to: url)
    return lines
}

private func summary(_ stdout: String) -> [String: Any] {
    let last = stdout.split(separator: "\n").last.map(String.init) ?? ""
    return (try? JSONSerialization.jsonObject(with: Data(last.utf8))) as? [String: Any] ?? [:]
}

@Suite("streamrec produce", .serialized, .timeLimit(.minutes(3)))
struct ProduceTests {
    let exe: String
    init() throws { exe = try #require(streamrecBinary(), "streamrec not built") }

    @Test("every line arrives exactly once, byte-identical, first line included, in its key's partition (mock and noida-db)",
          arguments: KafkaBrokerKind.allCases)
    func roundTrip(broker kind: KafkaBrokerKind) throws {
        let broker = try startBroker(kind, topics: ["rows": 8, "rows2": 8])
        defer { broker.stop() }
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("rows.tsv")
        let lines = try writeRows(file)

        let r = try runProcess(exe, ["produce", "--config", "/dev/null", "--data", file.path, "--topic", "rows",
                                     "--bootstrap", broker.bootstrapServers], timeout: .seconds(60))
        #expect(r.status == 0, "produce failed: \(r.stderr)")
        let s = summary(r.stdout)
        #expect(s["rows"] as? Int == lines.count)
        #expect(s["delivered"] as? Int == lines.count)
        #expect(s["failed_deliveries"] as? Int == 0)
        #expect(s["partitions"] as? Int == 8)

        let got = try consumeAll(bootstrap: broker.bootstrapServers, topic: "rows", partitions: 8, expecting: lines.count)
        #expect(got.count == lines.count)
        var expected: [[UInt8]: Int] = [:]
        for l in lines { expected[l, default: 0] += 1 }
        var seen: [[UInt8]: Int] = [:]
        var partitionOf: [[UInt8]: Int32] = [:]
        for m in got {
            seen[m.value, default: 0] += 1
            partitionOf[m.value] = m.partition
            #expect(m.partition == RowPartitioning.partition(row: m.value, partitions: 8))
            #expect(m.key == withUnsafeBytes(of: RowPartitioning.fnv1a64(m.value).bigEndian) { Array($0) })
        }
        #expect(seen == expected, "some lines missing, duplicated or altered")
        #expect(seen[lines[0]] == 1, "the first line was swallowed")
        #expect(Set(got.map(\.partition)).count == 8)

        // Produced again into another topic: every line lands in the same partition.
        let r2 = try runProcess(exe, ["produce", "--config", "/dev/null", "--data", file.path, "--topic", "rows2",
                                      "--bootstrap", broker.bootstrapServers], timeout: .seconds(60))
        #expect(r2.status == 0, "produce failed: \(r2.stderr)")
        let got2 = try consumeAll(bootstrap: broker.bootstrapServers, topic: "rows2", partitions: 8, expecting: lines.count)
        #expect(got2.count == lines.count)
        for m in got2 { #expect(partitionOf[m.value] == m.partition) }

        // kcat, another client, sees the same per-partition counts.
        if let kcat = findExecutable("kcat") {
            let k = try runProcess(kcat, ["-C", "-b", broker.bootstrapServers, "-t", "rows", "-o", "beginning", "-e", "-q",
                                          "-f", "%p\\n"], timeout: .seconds(30))
            #expect(k.status == 0, "kcat: \(k.stderr)")
            var counts: [Int32: Int] = [:]
            for p in k.stdout.split(separator: "\n") { counts[Int32(p)!, default: 0] += 1 }
            var ours: [Int32: Int] = [:]
            for m in got { ours[m.partition, default: 0] += 1 }
            #expect(counts == ours)
        }
    }

    @Test("--format behavior: one event per message keyed by the user; one user's events in one partition, in file order (mock and noida-db)",
          arguments: KafkaBrokerKind.allCases)
    func behaviorFormat(broker kind: KafkaBrokerKind) throws {
        let broker = try startBroker(kind, topics: ["behavior": 4])
        defer { broker.stop() }
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("user_behavior.csv")
        // Tianchi layout (user,item,behavior,time, no header): 23 users' events interleaved, so
        // each user's order is only kept if the producer keeps it per partition.
        let kinds = ["pv", "cart", "fav", "buy"]
        let lines = (0 ..< 1_200).map { i in "\(100_000 + (i * 7) % 23),\(5_000 + (i * 31) % 211),\(kinds[i % 4]),\(1_511_544_070 + i)" }
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)

        // No --topic: --format behavior's default topic (the one configs/cluster.yaml creates).
        let r = try runProcess(exe, ["produce", "--config", "/dev/null", "--data", file.path, "--format", "behavior",
                                     "--bootstrap", broker.bootstrapServers], timeout: .seconds(60))
        #expect(r.status == 0, "produce failed: \(r.stderr)")
        let s = summary(r.stdout)
        #expect(s["topic"] as? String == "behavior" && s["rows"] as? Int == lines.count && s["delivered"] as? Int == lines.count)

        let got = try consumeAll(bootstrap: broker.bootstrapServers, topic: "behavior", partitions: 4, expecting: lines.count)
        #expect(got.count == lines.count)
        var partitionsOf: [String: Set<Int32>] = [:]
        var consumed: [String: [(offset: Int64, line: String)]] = [:]
        for m in got {
            let line = String(decoding: m.value, as: UTF8.self)
            let user = String(line.prefix { $0 != "," })
            #expect(m.key == Array(user.utf8), "key of '\(line)' is not its user id")
            #expect(m.partition == RowPartitioning.partition(row: Array(user.utf8), partitions: 4))
            partitionsOf[user, default: []].insert(m.partition)
            consumed[user, default: []].append((m.offset, line))
        }
        var produced: [String: [String]] = [:]
        for l in lines { produced[String(l.prefix { $0 != "," }), default: []].append(l) }
        #expect(produced.count == 23)
        for (user, events) in produced {
            #expect(partitionsOf[user]?.count == 1, "user \(user) is spread over partitions \(partitionsOf[user] ?? [])")
            #expect(consumed[user]?.sorted { $0.offset < $1.offset }.map(\.line) == events, "user \(user)'s events are out of file order")
        }
        #expect(Set(got.map(\.partition)).count > 1, "all users landed in one partition")
    }

    @Test("delivery failure (nothing listening) exits non-zero and names the error")
    func deliveryFailure() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("rows.tsv")
        _ = try writeRows(file, rows: 50)
        let port = try freeLoopbackPort()
        let r = try runProcess(exe, ["produce", "--config", "/dev/null", "--data", file.path, "--topic", "rows",
                                     "--bootstrap", "127.0.0.1:\(port)", "--partitions", "2",
                                     "-X", "message.timeout.ms=1500", "--flush-timeout", "10"], timeout: .seconds(60))
        #expect(r.status == 1, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stderr.contains("deliveries failed"), "stderr: \(r.stderr)")
        #expect(r.stderr.lowercased().contains("timed out"), "stderr: \(r.stderr)")
        let s = summary(r.stdout)
        #expect(s["delivered"] as? Int == 0)
        #expect((s["failed_deliveries"] as? Int ?? 0) + (s["undelivered"] as? Int ?? 0) == s["rows"] as? Int)
    }

    @Test("a partition the topic does not have is a failed delivery, not a silent loss")
    func unknownPartition() throws {
        let broker = try BrokerFixture(topics: ["rows": 2])
        defer { broker.stop() }
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("rows.tsv")
        _ = try writeRows(file, rows: 200)
        let r = try runProcess(exe, ["produce", "--config", "/dev/null", "--data", file.path, "--topic", "rows",
                                     "--bootstrap", broker.bootstrapServers, "--partitions", "8",
                                     "-X", "message.timeout.ms=3000"], timeout: .seconds(60))
        #expect(r.status == 1, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stderr.lowercased().contains("unknown partition"), "stderr: \(r.stderr)")
    }

    @Test("--rate limits rows per second (2,000 rows at 4,000/s take ≥ 0.4 s)")
    func rateLimit() throws {
        let broker = try BrokerFixture(topics: ["rows": 2])
        defer { broker.stop() }
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("rows.tsv")
        var gen = SyntheticCriteo(seed: 3)
        let text = (0 ..< 2_000).map { _ in String(decoding: gen.nextRow().line, as: UTF8.self) }.joined(separator: "\n") + "\n"
        try text.write(to: file, atomically: true, encoding: .utf8)
        let start = ContinuousClock.now
        let r = try runProcess(exe, ["produce", "--config", "/dev/null", "--data", file.path, "--topic", "rows",
                                     "--bootstrap", broker.bootstrapServers, "--rate", "4000"], timeout: .seconds(60))
        let wall = ContinuousClock.now - start
        #expect(r.status == 0, "produce failed: \(r.stderr)")
        #expect(summary(r.stdout)["rows"] as? Int == 2_000)
        #expect(wall >= .milliseconds(400), "2,000 rows at 4,000 rows/s finished in \(wall)")
        #expect((summary(r.stdout)["seconds"] as? Double ?? 0) >= 0.4)
    }

    @Test("SIGTERM mid-stream: stops, flushes, every produced row delivered, exit 143")
    func sigterm() throws {
        let broker = try BrokerFixture(topics: ["rows": 4])
        defer { broker.stop() }
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("rows.tsv")
        _ = try writeRows(file, rows: 20_000)
        let out = dir.appendingPathComponent("out.txt")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = ["produce", "--config", "/dev/null", "--data", file.path, "--topic", "rows",
                             "--bootstrap", broker.bootstrapServers, "--rate", "2000"]
        let handle = try FileHandle(forWritingTo: out)
        process.standardOutput = handle
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Mid-stream: once the broker holds some rows (20,000 at 2,000 rows/s take 10 s).
        let watcher = try KafkaConsumer(config: KafkaConfig(bootstrapServers: broker.bootstrapServers))
        #expect(poll(for: 20) { (Int32(0) ..< 4).reduce(Int64(0)) { $0 + ((try? watcher.watermarks(topic: "rows", partition: $1).high) ?? 0) } >= 500 })
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try handle.close()
        #expect(process.terminationStatus == 128 + SIGTERM)
        let s = summary(try String(contentsOf: out, encoding: .utf8))
        let rows = s["rows"] as? Int ?? -1
        #expect(rows > 0 && rows < 20_000)
        #expect(s["delivered"] as? Int == rows)
        #expect(s["interrupted"] as? String == "SIGTERM")
        let got = try consumeAll(bootstrap: broker.bootstrapServers, topic: "rows", partitions: 4, expecting: rows, timeout: .seconds(10))
        #expect(got.count == rows)
    }
}

@Suite("row keys, partitions and the rate limiter")
struct RowPartitioningTests {
    @Test("FNV-1a-64 reference values; partition = hash mod P")
    func fnv() {
        #expect(RowPartitioning.fnv1a64([]) == 0xcbf2_9ce4_8422_2325)
        #expect(RowPartitioning.fnv1a64(Array("a".utf8)) == 0xaf63_dc4c_8601_ec8c)
        #expect(RowPartitioning.fnv1a64(Array("foobar".utf8)) == 0x8594_4171_f739_67e8)
        let row = Array("1\t2\t3".utf8)
        #expect(RowPartitioning.partition(row: row + [0x0A], partitions: 7) == RowPartitioning.partition(row: row, partitions: 7))
        #expect(RowPartitioning.partition(row: row, partitions: 7) == Int32(RowPartitioning.fnv1a64(row) % 7))
    }

    @Test("--key-field keys by one field: same user, same partition")
    func keyField() {
        let keying = RowKeying.field(index: 1, separator: UInt8(ascii: ","))
        let a = Array("ts1,user42,item7,click".utf8), b = Array("ts9,user42,item1,buy".utf8)
        #expect(RowPartitioning.partition(row: a, keying: keying, partitions: 16)
                == RowPartitioning.partition(row: b, keying: keying, partitions: 16))
        #expect(RowPartitioning.partition(row: a, keying: keying, partitions: 16)
                == RowPartitioning.partition(row: Array("user42".utf8), partitions: 16))
        // Last field, and a missing field (hashes as empty).
        #expect(RowPartitioning.partition(row: a, keying: .field(index: 3, separator: 44), partitions: 16)
                == RowPartitioning.partition(row: Array("click".utf8), partitions: 16))
        #expect(RowPartitioning.partition(row: a, keying: .field(index: 9, separator: 44), partitions: 16)
                == RowPartitioning.partition(row: [], partitions: 16))
    }

    @Test("token bucket: a burst, then one token per 1/rate seconds")
    func tokenBucket() {
        let t0 = ContinuousClock.now
        var bucket = TokenBucket(rate: 1000, burst: 10, now: t0)
        for _ in 0 ..< 10 { #expect(bucket.take(now: t0) == .zero) }
        let wait = bucket.take(now: t0)
        #expect(wait > .microseconds(900) && wait <= .microseconds(1001))
        // 100 rows at 1000/s after the burst need ~0.1 s of waiting in total.
        var now = t0 + wait
        var total = Duration.zero
        for _ in 0 ..< 100 { let w = bucket.take(now: now); total += w; now += w }
        #expect(total > .milliseconds(95) && total < .milliseconds(105))
    }
}
