import Foundation
import Streaming

/// A `redis-server` with AOF on (appendfsync always) in its own directory, that can be stopped
/// and started again on the same port with its data — for "Redis restarted mid-stream" tests.
/// `stop()` keeps the directory; `destroy()` (also deinit) kills the server and removes it.
public final class PersistentRedisServer: @unchecked Sendable {
    public let port: Int
    public let directory: URL
    private var process: Process?
    private let lock = NSLock()

    public init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-redis-aof-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try freeLoopbackPort()
        try start()
    }

    public var address: String { "127.0.0.1:\(port)" }
    public var endpoint: RedisEndpoint { RedisEndpoint(host: "127.0.0.1", port: port) }
    public var isRunning: Bool { lock.withLock { process?.isRunning ?? false } }

    /// Starts redis-server (loading the AOF if there is one) and waits for PING (≤ 10 s).
    public func start() throws {
        guard let server = findExecutable("redis-server") else { throw FixtureError("redis-server not found; run scripts/setup.sh") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: server)
        p.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory.path, "--save", "",
                       "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.run()
        lock.withLock { process = p }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let c = try? RedisConnection(host: "127.0.0.1", port: port, timeout: .seconds(1)),
               (try? c.command(["PING"]).text) == "PONG" { return }
            if !p.isRunning { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw FixtureError("redis-server (AOF) on port \(port) did not answer PING within 10 s")
    }

    /// Stops the server (SHUTDOWN, which flushes the AOF; SIGKILL if it does not exit in 3 s).
    public func stop() {
        guard let p = lock.withLock({ process }) else { return }
        if p.isRunning {
            if let c = try? RedisConnection(host: "127.0.0.1", port: port, timeout: .seconds(1)) {
                _ = try? c.command(["SHUTDOWN"])
            }
            let deadline = ContinuousClock.now + .seconds(3)
            while p.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        p.waitUntilExit()
        lock.withLock { process = nil }
    }

    public func destroy() {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { destroy() }
}
