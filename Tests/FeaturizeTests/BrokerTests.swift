// `streamrec broker` as a real subprocess: bootstrap file, clients, kcat, clean SIGTERM.
import Foundation
import Streaming
import Testing
import TestSupport

/// Reads `count` messages from every partition of `topic` by explicit assignment (or until `timeout`).
func consumeAll(bootstrap: String, topic: String, partitions: Int, expecting count: Int,
                timeout: Duration = .seconds(30)) throws -> [KafkaMessage] {
    let consumer = try KafkaConsumer(config: KafkaConfig(bootstrapServers: bootstrap))
    try consumer.assign((0 ..< Int32(partitions)).map { KafkaAssignment(topic: topic, partition: $0, offset: KafkaOffset.beginning) })
    var out: [KafkaMessage] = []
    let deadline = ContinuousClock.now + timeout
    while out.count < count && ContinuousClock.now < deadline {
        let batch = try consumer.poll(maxMessages: 2000, timeout: .milliseconds(200))
        #expect(batch.errors.isEmpty, "consumer errors: \(batch.errors.map(\.error))")
        out += batch.messages
    }
    // Nothing beyond what was expected.
    out += try consumer.poll(maxMessages: 2000, timeout: .milliseconds(300)).messages
    return out
}

@Suite("streamrec broker (mock Kafka cluster subprocess)", .serialized, .timeLimit(.minutes(2)))
struct BrokerTests {
    @Test("starts on loopback, writes its bootstrap file, serves clients, and SIGTERM removes the file")
    func lifecycle() throws {
        let broker = try BrokerFixture(topics: ["events": 3], brokers: 2)
        defer { broker.stop() }
        let servers = broker.bootstrapServers.split(separator: ",")
        #expect(servers.count == 2)
        for s in servers { #expect(s.hasPrefix("127.0.0.1:"), "mock broker not on loopback: \(s)") }
        #expect(broker.log.contains("BOOTSTRAP \(broker.bootstrapServers)"))

        do {  // the producer is gone before the broker stops (no reconnect noise)
            let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: broker.bootstrapServers))
            #expect(try producer.partitionCount(topic: "events") == 3)
            for i in 0 ..< 30 { try producer.produce(topic: "events", partition: Int32(i % 3), key: "k\(i)", value: "v\(i)") }
            try producer.flush(timeout: .seconds(10))
            #expect(producer.deliveryStats.succeeded == 30)
        }
        let got = try consumeAll(bootstrap: broker.bootstrapServers, topic: "events", partitions: 3, expecting: 30)
        #expect(Set(got.map { String(decoding: $0.value, as: UTF8.self) }) == Set((0 ..< 30).map { "v\($0)" }))
        #expect(got.count == 30)

        // SIGTERM (the test thread's blocked mask is inherited; the broker unblocks it itself).
        #expect(FileManager.default.fileExists(atPath: broker.bootstrapFile.path))
        kill(broker.process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(10)
        while broker.process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        #expect(!broker.process.isRunning, "broker ignored SIGTERM")
        #expect(!FileManager.default.fileExists(atPath: broker.bootstrapFile.path), "bootstrap file left behind")
        #expect(broker.stop() == 0)
    }

    @Test("SIGINT stops it too")
    func sigint() throws {
        let broker = try BrokerFixture()
        defer { broker.stop() }
        kill(broker.process.processIdentifier, SIGINT)
        let deadline = ContinuousClock.now + .seconds(10)
        while broker.process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        #expect(!broker.process.isRunning)
        #expect(broker.stop() == 0)
    }

    @Test("topics come from the config file's kafka section")
    func topicsFromConfig() throws {
        guard let exe = streamrecBinary() else { Issue.record("streamrec not built"); return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-cfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = dir.appendingPathComponent("cluster.yaml")
        try "kafka:\n  brokers: 1\n  topics:\n    - {name: a, partitions: 5}\n    - {name: b, partitions: 2}\n"
            .write(to: cfg, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: exe)
        let boot = dir.appendingPathComponent("bootstrap")
        process.arguments = ["broker", "--config", cfg.path, "--bootstrap-file", boot.path, "--topic", "c", "--partitions", "7"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            kill(process.processIdentifier, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(5)
            while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while !FileManager.default.fileExists(atPath: boot.path) && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let bootstrap = try String(contentsOf: boot, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(bootstrap.split(separator: ",").count == 1)
        let consumer = try KafkaConsumer(config: KafkaConfig(bootstrapServers: bootstrap))
        #expect(try consumer.partitionCount(topic: "a") == 5)
        #expect(try consumer.partitionCount(topic: "b") == 2)
        #expect(try consumer.partitionCount(topic: "c") == 7)
    }

    @Test("kcat (a Kafka client other than ours) produces into the broker; our consumer reads every message")
    func kcatProduces() throws {
        guard let kcat = findExecutable("kcat") else { Issue.record("kcat not installed; run scripts/setup.sh"); return }
        let broker = try BrokerFixture(topics: ["kc": 2])
        defer { broker.stop() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-kcat-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in.txt")
        let lines = (0 ..< 200).map { "user\($0 % 7)|row \($0)\tvalue" }
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        // key|value per line, librdkafka's default partitioner.
        let r = try runProcess(kcat, ["-P", "-b", broker.bootstrapServers, "-t", "kc", "-K", "|", "-l", input.path],
                               timeout: .seconds(30))
        #expect(r.status == 0, "kcat failed: \(r.stderr)")
        let got = try consumeAll(bootstrap: broker.bootstrapServers, topic: "kc", partitions: 2, expecting: 200)
        #expect(got.count == 200)
        #expect(Set(got.map { String(decoding: ($0.key ?? []) + Array("|".utf8) + $0.value, as: UTF8.self) }) == Set(lines))
    }
}

// The scripts start daemons through `detached` (cluster/lib.sh), which drops inherited file
// descriptors: Foundation's Process waits until every holder of the child's status descriptor
// has exited, so a daemon inheriting it kept up.sh "running" here forever.
@Suite("cluster/up.sh, status.sh, down.sh", .timeLimit(.minutes(2)))
struct ClusterScriptTests {
    @Test("up starts redis, broker and ompi-server; twice is harmless; down leaves no process behind")
    func upDown() throws {
        guard let exe = streamrecBinary() else { Issue.record("streamrec not built"); return }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-run-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: run) }
        let env = ["STREAMREC_RUN_DIR": run.path, "STREAMREC_REDIS_PORT": "\(try freeLoopbackPort())", "STREAMREC_BIN": exe,
                   "STREAMREC_CLUSTER_CONFIG": "/dev/null", "STREAMREC_BROKER_ARGS": "--brokers 1 --topic t --partitions 2"]
        func script(_ name: String) throws -> ProcessResult {
            try runProcess("/bin/bash", [repo.appendingPathComponent("cluster/\(name)").path], environment: env, timeout: .seconds(60))
        }
        let pidfiles = ["redis/redis.pid", "broker/broker.pid", "ompi-server/ompi-server.pid"].map { run.appendingPathComponent($0) }
        var pids: [Int32] = []
        defer {
            _ = try? script("down.sh")
            for pid in pids where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
        let up = try script("up.sh")
        #expect(up.status == 0, "up.sh: \(up.stdout) \(up.stderr)")
        pids = pidfiles.compactMap { try? String(contentsOf: $0, encoding: .utf8) }
            .compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(pids.count == 3)
        for pid in pids { #expect(kill(pid, 0) == 0) }
        let bootstrap = try String(contentsOf: run.appendingPathComponent("broker/bootstrap"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try KafkaConsumer(config: KafkaConfig(bootstrapServers: bootstrap)).partitionCount(topic: "t") == 2)
        #expect(try script("up.sh").status == 0)
        #expect(try script("status.sh").status == 0)

        let down = try script("down.sh")
        #expect(down.status == 0, "down.sh: \(down.stdout) \(down.stderr)")
        for pid in pids { #expect(kill(pid, 0) != 0, "pid \(pid) still alive after down.sh") }
        for f in pidfiles { #expect(!FileManager.default.fileExists(atPath: f.path)) }
        #expect(!FileManager.default.fileExists(atPath: run.appendingPathComponent("broker/bootstrap").path))
        #expect(try script("down.sh").status == 0)
        #expect(try script("status.sh").status == 3)
    }
}
