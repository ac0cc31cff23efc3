// noida-db (PyPI `noida-db`, pinned 0.2.3): a Kafka-protocol broker written independently of
// librdkafka, so the produce/featurize integration tests also run against a broker whose
// protocol code is not the client's own (librdkafka's mock cluster shares its code with the client).
import Foundation
import Streaming
import Synchronization

/// Starts `noida-db start --only kafka` on 127.0.0.1 with a port the kernel picks (`--kafka-port 0`;
/// the bound address is read from its output, so no port can be taken in between) and its data
/// in a temporary directory, waits for it by polling, creates the topics through the Kafka admin
/// API (it auto-creates topics with ONE partition only) and stops it (SIGTERM, then SIGKILL after
/// a grace period). `stop()` also runs on deinit.
///
/// The binary is `$STREAMREC_NOIDA_BIN` (scripts/test.sh installs noida-db into a virtual
/// environment and exports the path of the Rust binary itself, not pip's Python wrapper: the
/// wrapper does not pass SIGTERM on to the binary).
public final class NoidaBrokerFixture: @unchecked Sendable {
    /// The version the tests are pinned to (scripts/noida.sh installs exactly this one).
    public static let version = "0.2.3"

    /// `127.0.0.1:PORT`.
    public let bootstrapServers: String
    /// Temporary directory holding the data dir and the log.
    public let directory: URL
    /// The broker's stdout+stderr.
    public let logFile: URL
    private let process: Process
    private let lock = NSLock()
    private var stopped = false

    /// `$STREAMREC_NOIDA_BIN` if it names an executable file.
    public static var configuredBinary: String? {
        guard let path = ProcessInfo.processInfo.environment["STREAMREC_NOIDA_BIN"], !path.isEmpty,
              FileManager.default.isExecutableFile(atPath: path) else { return nil }
        return path
    }

    /// True when the test run demands noida-db (scripts/test.sh sets `STREAMREC_REQUIRE_NOIDA=1`):
    /// a test that cannot find it then fails instead of skipping.
    public static var isRequired: Bool { ProcessInfo.processInfo.environment["STREAMREC_REQUIRE_NOIDA"] == "1" }

    /// - Parameters:
    ///   - topics: created through the admin API before `init` returns, each checked in the
    ///     broker's metadata.
    ///   - binary: the noida-db executable (default: `configuredBinary`).
    public init(topics: [KafkaNewTopic] = [], binary: String? = nil, startTimeout: Duration = .seconds(20)) throws {
        guard let exe = binary ?? Self.configuredBinary else {
            throw FixtureError("noida-db not found: set STREAMREC_NOIDA_BIN to its binary (bash scripts/noida.sh installs noida-db \(Self.version) and prints the path)")
        }
        try Self.checkVersion(exe)
        let fm = FileManager.default
        directory = fm.temporaryDirectory.appendingPathComponent("streamrec-noida-\(UUID().uuidString)")
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        logFile = directory.appendingPathComponent("noida.log")
        _ = fm.createFile(atPath: logFile.path, contents: nil)
        let process = Process()
        self.process = process
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = ["start", "--data-dir", directory.appendingPathComponent("data").path,
                             "--host", "127.0.0.1", "--only", "kafka", "--kafka-port", "0"]
        let log = try FileHandle(forWritingTo: logFile)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        // Test threads block SIGTERM and a child inherits the mask: unblocked, SIGTERM stops it cleanly.
        do { try withTerminationSignalsUnblocked { try process.run() } } catch {
            try? fm.removeItem(at: directory)
            throw error
        }
        try? log.close()

        // It prints `kafka  127.0.0.1:PORT` once the listener is bound.
        let deadline = ContinuousClock.now + startTimeout
        var port: Int? = nil
        while port == nil && ContinuousClock.now < deadline && process.isRunning {
            port = Self.kafkaPort(in: (try? String(contentsOf: logFile, encoding: .utf8)) ?? "")
            if port == nil { Thread.sleep(forTimeInterval: 0.02) }
        }
        guard let port else {
            let text = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
            terminateGracefully(process, grace: .seconds(2))
            try? fm.removeItem(at: directory)
            throw FixtureError("noida-db did not report its Kafka listener within \(startTimeout): \(text)")
        }
        bootstrapServers = "127.0.0.1:\(port)"
        do {
            try createTopics(topics, deadline: deadline)
        } catch {
            let text = log
            stop(grace: .seconds(2))
            throw FixtureError("noida-db on \(bootstrapServers): creating topics failed: \(error)\nlog: \(text)")
        }
    }

    /// The broker's output so far.
    public var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    public var isRunning: Bool { process.isRunning }

    /// Creates topics through the admin API, then polls metadata until each shows its partitions.
    public func createTopics(_ topics: [KafkaNewTopic], deadline: ContinuousClock.Instant = .now + .seconds(20)) throws {
        guard !topics.isEmpty else { return }
        let admin = try KafkaAdmin(config: KafkaConfig(bootstrapServers: bootstrapServers, ["log_level": "3"]))
        try admin.createTopics(topics, timeout: max(.seconds(1), deadline - .now))
        for t in topics {
            var last: Error? = nil
            let visible = poll(for: max(0, Double((deadline - .now).components.seconds))) {
                do { return try admin.partitionCount(topic: t.name, timeout: .seconds(2)) == t.partitions } catch { last = error; return false }
            }
            if !visible { throw FixtureError("topic \(t.name) not visible with \(t.partitions) partitions (last error: \(last.map { "\($0)" } ?? "none"))") }
        }
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILL; removes the directory. Idempotent.
    public func stop(grace: Duration = .seconds(10)) {
        lock.lock(); defer { lock.unlock() }
        if stopped { return }
        stopped = true
        terminateGracefully(process, grace: grace)
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop(grace: .seconds(3)) }

    static func kafkaPort(in output: String) -> Int? {
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 2, fields[0] == "kafka", fields[1].hasPrefix("127.0.0.1:") else { continue }
            if let port = Int(fields[1].dropFirst("127.0.0.1:".count)), port > 0 { return port }
        }
        return nil
    }

    private static let checkedVersions = Mutex<[String: String]>([:])

    /// `noida-db version` must print the pinned version (once per binary and test process).
    private static func checkVersion(_ exe: String) throws {
        let known = checkedVersions.withLock { $0[exe] }
        let printed: String
        if let known { printed = known } else {
            let r = try runProcess(exe, ["version"], timeout: .seconds(20))
            printed = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            checkedVersions.withLock { $0[exe] = printed }
        }
        guard printed == "noida-db \(version)" else {
            throw FixtureError("\(exe) is '\(printed)', the tests are pinned to noida-db \(version) (bash scripts/noida.sh installs it)")
        }
    }
}
