// A `streamrec broker` subprocess (librdkafka mock cluster on loopback) for tests.
import Foundation

/// Starts `streamrec broker` in a temporary directory, waits for its bootstrap file, and stops it
/// (SIGTERM, then SIGKILL after a grace period). `stop()` also runs on deinit.
///
/// ```swift
/// let broker = try BrokerFixture(topics: ["rows": 4])
/// defer { broker.stop() }
/// let config = KafkaConfig(bootstrapServers: broker.bootstrapServers)
/// ```
public final class BrokerFixture: @unchecked Sendable {
    /// `127.0.0.1:PORT,…` of the mock brokers.
    public let bootstrapServers: String
    /// The file the broker wrote its address to (removed by the broker on a clean stop).
    public let bootstrapFile: URL
    /// Temporary directory holding the bootstrap file and the broker's log.
    public let directory: URL
    /// The broker's stdout+stderr.
    public let logFile: URL
    public let process: Process
    private let lock = NSLock()
    private var exitStatus: Int32? = nil

    /// - Parameters:
    ///   - topics: name → partition count, created at start.
    ///   - brokers: number of mock brokers.
    ///   - binary: the `streamrec` executable (default: `streamrecBinary()`).
    public init(topics: [String: Int] = [:], brokers: Int = 1, binary: String? = nil,
                startTimeout: Duration = .seconds(20)) throws {
        guard let exe = binary ?? streamrecBinary() else {
            throw FixtureError("streamrec binary not found; run `swift build` first or set STREAMREC_BIN")
        }
        let fm = FileManager.default
        directory = fm.temporaryDirectory.appendingPathComponent("streamrec-broker-\(UUID().uuidString)")
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        bootstrapFile = directory.appendingPathComponent("bootstrap")
        logFile = directory.appendingPathComponent("broker.log")
        _ = fm.createFile(atPath: logFile.path, contents: nil)
        var args = ["broker", "--config", "/dev/null", "--brokers", "\(brokers)", "--bootstrap-file", bootstrapFile.path]
        for (name, p) in topics.sorted(by: { $0.key < $1.key }) { args += ["--topic", name, "--partitions", "\(p)"] }
        process = Process()
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = args
        let log = try FileHandle(forWritingTo: logFile)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()

        let deadline = ContinuousClock.now + startTimeout
        var address: String? = nil
        while ContinuousClock.now < deadline && process.isRunning {
            if let text = try? String(contentsOf: bootstrapFile, encoding: .utf8) {
                let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if !value.isEmpty { address = value; break }
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        guard let address else {
            let logText = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
            terminateGracefully(process, grace: .seconds(1))
            try? fm.removeItem(at: directory)
            throw FixtureError("streamrec broker did not write its bootstrap file within \(startTimeout): \(logText)")
        }
        bootstrapServers = address
    }

    /// The broker's output so far.
    public var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    public var isRunning: Bool { process.isRunning }

    /// Sends SIGTERM and waits up to `grace` for a clean exit, then SIGKILL. Returns the exit
    /// status (the broker exits 0 on SIGTERM). Idempotent. Removes the directory.
    @discardableResult
    public func stop(grace: Duration = .seconds(10)) -> Int32 {
        lock.lock(); defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        let status = terminateGracefully(process, grace: grace)
        exitStatus = status
        try? FileManager.default.removeItem(at: directory)
        return status
    }


    deinit { stop(grace: .seconds(3)) }
}
