// Streaming/ShutdownSignals: SIGINT/SIGTERM for every long-running command (`broker`, `produce`,
// `featurize`, `train`, `serve` — whose Hummingbird service group runs without its own signal
// handling and is shut down gracefully when this reports a signal) — one mechanism, one behaviour.
//
// Why this exists
//   A process started from a Swift test thread (or from some daemons) inherits a signal mask in
//   which SIGTERM/SIGINT are blocked, and `cmd &` in a non-interactive shell starts it with
//   SIGINT ignored. Either way `kill -TERM` would do nothing. `ShutdownSignals.install()` resets
//   that: it installs a handler for each signal and unblocks them in the calling thread. Call it
//   first thing in `run()`, before any other thread exists (librdkafka's threads then inherit the
//   unblocked mask).
//
// How
//   The handler only writes the signal number to a self-pipe (async-signal-safe). A watcher
//   thread reads the pipe and records the first signal; `received` polls it, `wait()` blocks on
//   it. Installing twice returns the same instance.
//
// Bounded stop
//   A SECOND SIGINT/SIGTERM (half a second or more after the first) exits the process at once (`_exit(128+signal)`, one line on stderr):
//   the operator asked twice, so nothing may wait any longer. `exitUnlessStopped(within:)` arms a
//   backstop for commands whose clean stop could wait on a network peer: after the first signal,
//   if the process is still running `grace` later it says so and exits the same way. Both skip
//   the clean stop's remaining work; callers rely on exactly-once re-reading (nothing they have
//   not committed is lost).

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Write end of the self-pipe, read by the signal handler. Set once, before the handler is installed.
nonisolated(unsafe) private var signalPipeWrite: Int32 = -1

private let shutdownHandler: @convention(c) (Int32) -> Void = { sig in
    var byte = UInt8(truncatingIfNeeded: sig)
    let saved = errno
    _ = write(signalPipeWrite, &byte, 1)
    errno = saved
}

/// The first SIGINT/SIGTERM received by the process, observed from any thread.
public final class ShutdownSignals: @unchecked Sendable {
    private let condition = NSCondition()
    private var first: Int32? = nil
    private var count = 0
    private var observers: [@Sendable (Int32) -> Void] = []
    private var lastWords: [@Sendable (Int32) -> Void] = []
    private var backstop: (grace: Duration, what: String)? = nil
    private var firstAt: ContinuousClock.Instant? = nil

    private static let lock = NSLock()
    nonisolated(unsafe) private static var shared: ShutdownSignals?

    /// Installs the handlers (idempotent) and unblocks `signals` in the calling thread.
    public static func install(_ signals: [Int32] = [SIGINT, SIGTERM]) -> ShutdownSignals {
        lock.lock(); defer { lock.unlock() }
        if let shared { return shared }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { fatalError("ShutdownSignals: pipe() failed: errno \(errno)") }
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        signalPipeWrite = fds[1]
        let instance = ShutdownSignals()
        let readFD = fds[0]
        let watcher = Thread { instance.watch(readFD) }
        watcher.name = "streamrec-signals"
        watcher.start()
        var set = sigset_t()
        sigemptyset(&set)
        for sig in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = shutdownHandler
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(sig, &action, nil)
            sigaddset(&set, sig)
        }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        shared = instance
        return instance
    }

    private func watch(_ fd: Int32) {
        var byte: UInt8 = 0
        while true {
            let r = read(fd, &byte, 1)
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { return }
            condition.lock()
            count += 1
            let isFirst = first == nil
            if isFirst { first = Int32(byte); firstAt = .now }
            let notify = observers
            let final = lastWords
            let armed = backstop
            // A repeat within half a second is the same request delivered twice (Ctrl-C reaches both
            // mpirun and the ranks, and mpirun forwards it again), not an operator asking twice.
            let again = !isFirst && firstAt.map { ContinuousClock.now - $0 >= .milliseconds(500) } ?? false
            condition.broadcast()
            condition.unlock()
            if again {
                for body in final { body(Int32(byte)) }
                Self.exitNow(Int32(byte), "second \(Self.name(of: Int32(byte))) received: exiting at once")
            }
            for observer in notify { observer(Int32(byte)) }
            if isFirst, let armed { startBackstop(armed.grace, armed.what, signal: Int32(byte)) }
        }
    }

    /// Calls `body` (on the watcher thread) for every signal from now on, e.g. to log it.
    public func onSignal(_ body: @escaping @Sendable (Int32) -> Void) {
        condition.lock(); defer { condition.unlock() }
        observers.append(body)
    }

    /// Calls `body` (on the watcher thread) just before a second signal ends the process, e.g. to
    /// pass the signal on to a child that must not outlive it. Keep it short and non-blocking.
    public func beforeForcedExit(_ body: @escaping @Sendable (Int32) -> Void) {
        condition.lock(); defer { condition.unlock() }
        lastWords.append(body)
    }

    /// After the first signal, exits the process (128+signal) if it is still running `grace`
    /// later; `what` names the command in the line it prints. Arm it once, right after `install()`.
    public func exitUnlessStopped(within grace: Duration, what: String) {
        condition.lock()
        backstop = (grace, what)
        let already = first
        condition.unlock()
        if let already { startBackstop(grace, what, signal: already) }
    }

    private func startBackstop(_ grace: Duration, _ what: String, signal: Int32) {
        let thread = Thread {
            Thread.sleep(forTimeInterval: grace.seconds)
            Self.exitNow(signal, "\(what): still running \(grace) after \(Self.name(of: signal)); exiting now "
                         + "(whatever was not committed is read again on restart)")
        }
        thread.name = "streamrec-shutdown-backstop"
        thread.start()
    }

    /// Writes `line` to stderr and ends the process without running exit handlers or waiting for
    /// any thread (some may be blocked in a network call).
    private static func exitNow(_ signal: Int32, _ line: String) -> Never {
        let text = Array((line + "\n").utf8)
        _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        _exit(exitStatus(for: signal))
    }

    /// True once SIGINT or SIGTERM arrived.
    public var isRaised: Bool { received != nil }

    /// The first signal received, or nil. Cheap enough to poll every few hundred rows.
    public var received: Int32? {
        condition.lock(); defer { condition.unlock() }
        return first
    }

    /// How many signals have arrived (a second Ctrl-C can mean "stop waiting").
    public var receivedCount: Int {
        condition.lock(); defer { condition.unlock() }
        return count
    }

    /// Blocks until a signal arrives (or `timeout` passes); returns it (nil on timeout).
    @discardableResult
    public func wait(timeout: Duration? = nil) -> Int32? {
        condition.lock(); defer { condition.unlock() }
        let deadline = timeout.map { Date().addingTimeInterval($0.seconds) }
        while first == nil {
            if let deadline {
                if !condition.wait(until: deadline) { return first }
            } else {
                condition.wait()
            }
        }
        return first
    }

    /// Conventional exit status for a process stopped by `signal` (128 + number).
    public static func exitStatus(for signal: Int32) -> Int32 { 128 + signal }

    /// `SIGINT`/`SIGTERM`/… by name.
    public static func name(of signal: Int32) -> String {
        switch signal {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        case SIGHUP: return "SIGHUP"
        default: return "signal \(signal)"
        }
    }
}
