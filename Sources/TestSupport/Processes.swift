// Shared by the test targets (a library, not a test target, so every suite can import it):
// throwaway redis-server, subprocess running, free ports, the built binary, MPI environment.
import Foundation
import Streaming

/// Runs a process to completion (or kills it after `timeout`) and returns status and output.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public let timedOut: Bool
}

public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                timeout: Duration = .seconds(120)) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    process.environment = env
    let outFile = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-test-\(UUID().uuidString).out")
    let errFile = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-test-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: outFile.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errFile.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: outFile); try? FileManager.default.removeItem(at: errFile) }
    let out = try FileHandle(forWritingTo: outFile), err = try FileHandle(forWritingTo: errFile)
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = ContinuousClock.now + timeout
    var timedOut = false
    while process.isRunning {
        if ContinuousClock.now > deadline {
            timedOut = true
            // SIGTERM may be blocked in the child (inherited signal mask); escalate to SIGKILL.
            process.terminate()
            Thread.sleep(forTimeInterval: 1)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            break
        }
        Thread.sleep(forTimeInterval: 0.05)
    }
    process.waitUntilExit()
    try out.close(); try err.close()
    return ProcessResult(status: process.terminationStatus,
                         stdout: (try? String(contentsOf: outFile, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOf: errFile, encoding: .utf8)) ?? "",
                         timedOut: timedOut)
}

/// First path among `candidates` that is an executable file.
public func findExecutable(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// A free TCP port on 127.0.0.1 (bind to port 0, read it back, close).
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
        }
    }
    guard ok else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A real `redis-server` on a free loopback port in a temporary directory, no persistence.
/// `stop()` (also run by deinit) kills it and removes the directory.
///
/// `password` sets the default user's password (`requirepass`); `tls` makes it listen with TLS
/// only, with the certificates' server pair, trusting their CA (and requiring a client
/// certificate when `requireClientCertificate`); `arguments` are more redis-server options (e.g.
/// `["--user", "alice", "on", ">secret", "~*", "+@all"]`). `endpoint` logs in as the default
/// user over the same transport.
public final class RedisServerFixture: @unchecked Sendable {
    public let port: Int
    public let directory: URL
    /// The default user's login (with `password`, and TLS with the test CA when `tls`).
    public let endpoint: RedisEndpoint
    private let process: Process

    public init(password: String? = nil, tls: TestCertificates? = nil, requireClientCertificate: Bool = false,
                arguments extra: [String] = []) throws {
        guard let server = findExecutable("redis-server") else {
            throw FixtureError("redis-server not found; run scripts/setup.sh")
        }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("streamrec-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try freeLoopbackPort()
        var endpoint = RedisEndpoint(host: "127.0.0.1", port: port, password: password)
        var listen = ["--port", "\(port)"]
        if let tls {
            listen = ["--port", "0", "--tls-port", "\(port)", "--tls-cert-file", tls.serverCertificate, "--tls-key-file", tls.serverKey,
                      "--tls-ca-cert-file", tls.ca, "--tls-auth-clients", requireClientCertificate ? "yes" : "no"]
            endpoint.tls = RedisEndpoint.TLS(caFile: tls.ca, certificateFile: requireClientCertificate ? tls.clientCertificate : nil,
                                             keyFile: requireClientCertificate ? tls.clientKey : nil)
        }
        self.endpoint = endpoint
        process = Process()
        process.executableURL = URL(fileURLWithPath: server)
        process.arguments = listen + ["--bind", "127.0.0.1", "--dir", directory.path,
                                      "--save", "", "--appendonly", "no", "--daemonize", "no"]
            + (password.map { ["--requirepass", $0] } ?? []) + extra
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Wait for PING (≤ 10 s).
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let reply = try? ping(), reply { return }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        stop()
        throw FixtureError("redis-server on port \(port) did not answer PING within 10 s")
    }

    private func ping() throws -> Bool {
        let connection = try RedisConnection(address: endpoint, timeout: .seconds(1))
        return try connection.command(["PING"]).text == "PONG"
    }

    /// Failed AUTH attempts the server has logged: the `count`s of the `auth` entries of
    /// `ACL LOG` (Redis 7.0 has no counter for them in `INFO stats`).
    public func failedLogins() throws -> Int {
        let entries = try RedisConnection(address: endpoint, timeout: .seconds(2)).command(["ACL", "LOG"]).elements ?? []
        return entries.reduce(0) { total, entry in
            let pairs = entry.elements ?? []
            let fields = Dictionary(stride(from: 0, to: pairs.count - 1, by: 2).map { (pairs[$0].text ?? "", pairs[$0 + 1]) }) { a, _ in a }
            return total + (fields["reason"]?.text == "auth" ? Int(fields["count"]?.integer ?? 0) : 0)
        }
    }

    /// `127.0.0.1:PORT`: the address of a server without password or TLS.
    public var address: String { "127.0.0.1:\(port)" }

    /// Freezes the server (SIGSTOP): connections are still accepted by the kernel, but nothing is
    /// answered — a hung Redis. `resume()` (SIGCONT) undoes it; `stop()` resumes first.
    public func pause() { if process.isRunning { kill(process.processIdentifier, SIGSTOP) } }

    public func resume() { if process.isRunning { kill(process.processIdentifier, SIGCONT) } }

    /// Processes spawned from test threads inherit a signal mask that blocks SIGTERM
    /// (dispatch worker threads block it), so ask Redis to exit, then SIGKILL if needed.
    public func stop() {
        resume()
        if process.isRunning {
            if let connection = try? RedisConnection(address: endpoint, timeout: .seconds(1)) {
                _ = try? connection.command(["SHUTDOWN", "NOSAVE"])
            }
            let deadline = ContinuousClock.now + .seconds(3)
            while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}

public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A fresh directory under the system temporary directory, named after the calling test.
/// The test removes it (`defer { try? FileManager.default.removeItem(at: dir) }`).
public func temporaryTestDirectory(_ name: String = #function) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("streamrec-\(name.filter(\.isLetter))-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A process running in the background with its stdout and stderr in one log file: for tests
/// that signal it, kill its children or restart what it depends on while it runs.
public final class BackgroundProcess: @unchecked Sendable {
    public let process = Process()
    public let logURL: URL

    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], log: URL) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        logURL = log
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let h = try FileHandle(forWritingTo: log)
        process.standardOutput = h
        process.standardError = h
        process.standardInput = FileHandle.nullDevice
        try withTerminationSignalsUnblocked { try process.run() }
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    /// The exit status once it has exited (nil while it runs).
    public var exitStatus: Int32? { process.isRunning ? nil : process.terminationStatus }
    public var output: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Direct children (e.g. the ranks `mpirun` started), lowest pid first.
    public func children() -> [Int32] { ProcessTree.children(of: pid) }

    /// The local process of MPI rank `rank` among the children.
    public func mpiRank(_ rank: Int) -> Int32? { ProcessTree.localRanks(of: pid)[rank] }

    /// Waits up to `seconds` for the process to exit; true if it did.
    @discardableResult
    public func waitForExit(within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { return false }
        process.waitUntilExit()
        return true
    }

    /// SIGKILLs the process and its children if still running (cleanup).
    public func kill() {
        guard process.isRunning else { return }
        for c in children() { Foundation.kill(c, SIGKILL) }
        Foundation.kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    deinit { kill() }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; returns the exit status.
@discardableResult
func terminateGracefully(_ process: Process, grace: Duration) -> Int32 {
    if process.isRunning {
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
    process.waitUntilExit()
    return process.terminationStatus
}

/// Polls `condition` every 50 ms until it holds or `seconds` pass; true if it held.
public func poll(for seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.05)
    }
    return try condition()
}

/// Runs `body` (e.g. `Process.run()`) with SIGTERM and SIGINT unblocked in the calling thread.
/// Test threads (dispatch workers) block them and a spawned child inherits that mask, so a shell
/// script's `trap … TERM` would never run; the test process itself is never sent these signals.
public func withTerminationSignalsUnblocked<T>(_ body: () throws -> T) rethrows -> T {
    var unblock = sigset_t(), previous = sigset_t()
    sigemptyset(&unblock)
    sigaddset(&unblock, SIGTERM)
    sigaddset(&unblock, SIGINT)
    pthread_sigmask(SIG_UNBLOCK, &unblock, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    return try body()
}
